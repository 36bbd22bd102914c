"""The reference checkpoint converter (projects/YOLACT/yolact/checkpoint_conversion.py) on
YolactEdge's published key lists and a synthetic video checkpoint (every key renamed or listed as
dropped, every model key covered), and its refusals: a missing value or an unknown key is a
``CheckpointError`` naming the file's key."""
import re
from pathlib import Path

import pytest
import torch

from detectron2.modeling import build_model
from rtinst.checkpoint import SafeCheckpointer
from rtinst.engine import load_config
from rtinst.errors import CheckpointError
from shared_files import reference_state_dict
from yolact import convert_reference_state_dict

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures/yolact"
CPU = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]
# flow-net and SPA names of ours -> the reference's (the converter's renaming, inverted)
FLOW_NAMES = [
    (r"flow_net\.reduce\.0\.(\w+)", r"flow_net_pre_convs.convs.0.0.\1"),
    (r"flow_net\.encoder(\d)\.(\d)\.0\.(\w+)", r"flow_net.conv\1.\2.0.\3"),
    (r"flow_net\.head(\d)\.flow\.weight", r"flow_net.pred\1.conv.weight"),
    (r"flow_net\.head(\d)\.(scale|bias)\.(\w+)", r"flow_net.pred\1.\2.\3"),
    (r"flow_net\.up_features(\d)\.weight", r"flow_net.upfeat\1.weight"),
    (r"flow_net\.up_flow(\d)\.weight", r"flow_net.upflow\1.weight"),
    (r"spa\.refine\.(\d+)\.0\.(\w+)", r"spa.refine_convs.\1.0.\2"),
]


def _model(config, *opts):
    return build_model(load_config(str(ROOT / "configs" / config), CPU + list(opts)))


def _fixture_state_dict(name):
    """A state dict of random values with the names and shapes of ``fixtures/yolact/<name>``."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for line in (FIXTURES / name).read_text().splitlines():
        if not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            size = tuple(int(d) for d in shape.split("x")) if shape != "scalar" else ()
            state[key] = (torch.zeros(size, dtype=torch.int64) if dtype == "int64"
                          else torch.rand(size, generator=generator) + 0.5)
    return state


def _assert_accounted_for(state, converted, report, model, uncovered=()):
    """Every file key renamed or dropped; the model loads the converted values and lacks only
    keys starting with ``uncovered``."""
    assert len(report.renamed) + len(report.dropped) + len(report.unused) == len(state)
    assert all(k.endswith("num_batches_tracked") for k in report.dropped)
    incompatible = model.load_state_dict(converted, strict=False)
    assert not incompatible.unexpected_keys
    assert [k for k in incompatible.missing_keys if not k.startswith(uncovered)] == []
    loaded = model.state_dict()
    for theirs, ours in report.renamed.items():
        torch.testing.assert_close(loaded[ours], state[theirs], msg=theirs)


# the published checkpoints are COCO image models (80 classes); the configs' video models have
# YouTube-VIS's 40
@pytest.mark.parametrize("name,config,opts", [
    ("yolact_edge_R101", "YolactEdge/yolactedge_R_101_550.yaml",
     ["MODEL.YOLACT.NUM_CLASSES", "80"]),
    ("yolact_edge_mobilenetv2", "YolactEdge/yolactedge_MNv2_550.yaml",
     ["MODEL.MOBILENET_V2.PRETRAINED", "False", "MODEL.YOLACT.NUM_CLASSES", "80"]),
])
def test_yolact_edge_image_checkpoints_convert_and_load(name, config, opts, tmp_path):
    """The flow net and SPA keep their initialisation (the reference's behaviour when a video
    model starts from an image checkpoint); MobileNetV2's layers 7, 8 are listed as unused."""
    state = reference_state_dict(name)
    converted, report = convert_reference_state_dict(state)
    model = _model(config, *opts)
    _assert_accounted_for(state, converted, report, model, uncovered=("flow_net.", "spa."))
    if "mobilenet" in name:
        assert report.unused and all(re.match(r"backbone\.layers\.[78]\.", k)
                                     for k in report.unused)
        # the checkpointer converts it by itself
        path = tmp_path / "reference.pth"
        torch.save(state, path)
        SafeCheckpointer(_model(config, *opts)).load(str(path))
    else:
        assert not report.unused


def _video_state_dict(model):
    """dbolya/yolact's R-101 key list with YolactEdge's FPN names, plus flow-net and SPA keys
    (the reference's names, the shapes of ``model``'s)."""
    state = _fixture_state_dict("yolact_base_config_keys.tsv")
    state = {re.sub(r"^fpn\.lat_", "fpn_phase_1.lat_", re.sub(r"^fpn\.(pred|downsample)_",
                                                               r"fpn_phase_2.\1_", k)): v
             for k, v in state.items()}
    for key, value in model.state_dict().items():
        for pattern, reference in FLOW_NAMES:
            if re.fullmatch(pattern, key):
                state[re.sub(pattern, reference, key)] = torch.rand_like(value)
    return state


@pytest.fixture(scope="module")
def video_model():
    return _model("YolactEdge/yolactedge_R_101_550.yaml", "MODEL.YOLACT_EDGE.SPA", "True",
                  "MODEL.YOLACT.NUM_CLASSES", "80")  # (the COCO key list's)


def test_a_video_checkpoint_converts_and_loads_every_key(video_model):
    state = _video_state_dict(video_model)
    assert any(k.startswith("spa.refine_convs.") for k in state)
    converted, report = convert_reference_state_dict(state)
    _assert_accounted_for(state, converted, report, video_model)


def test_a_second_flow_net_pre_convolution_is_refused(video_model):
    state = _video_state_dict(video_model)
    state["flow_net_pre_convs.convs.1.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=re.escape("flow_net_pre_convs.convs.1.0.weight")):
        convert_reference_state_dict(state)


def _without(key):
    state = _fixture_state_dict("yolact_plus_resnet50_config_keys.tsv")
    assert key in state
    del state[key]
    return state


@pytest.mark.parametrize("key", [
    "backbone.layers.1.0.bn2.running_var",  # would load as 1 (FrozenBatchNorm's default)
    "backbone.layers.2.3.bn1.running_mean",
    "backbone.layers.1.0.conv2.bias",  # a deformable block's: would stay 0
    "backbone.layers.1.0.conv2.conv_offset_mask.weight",
    "fpn.pred_layers.1.bias",
])
def test_a_missing_value_is_refused_naming_the_files_key(key):
    with pytest.raises(CheckpointError, match=re.escape(key)):
        convert_reference_state_dict(_without(key))


def test_the_checkpointer_refuses_a_missing_deformable_bias_naming_the_files_key(tmp_path):
    path = tmp_path / "reference.pth"
    torch.save(_without("backbone.layers.2.1.conv2.bias"), path)
    model = _model("YOLACT/yolact_plus_R_50_550.yaml")
    with pytest.raises(CheckpointError, match=r"backbone\.layers\.2\.1\.conv2\.bias"):
        SafeCheckpointer(model).load(str(path))


@pytest.mark.parametrize("key", [
    "class_existence_fc.weight",  # of no known kind
    "backbone.layers.1.0.bn2.scale",  # of known kinds, but no such value
    "backbone.layers.1.0.conv4.weight",
    "fpn.lat_layers.7.weight",
    "prediction_layers.0.extra.weight",
    "flow_net.conv4.0.0.weight",
])
def test_an_unknown_key_is_refused_naming_it(key):
    state = _fixture_state_dict("yolact_plus_resnet50_config_keys.tsv")
    state[key] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=re.escape(key)):
        convert_reference_state_dict(state)


def test_a_mobilenet_layer_the_model_does_not_have_may_lack_values():
    state = reference_state_dict("yolact_edge_mobilenetv2")
    del state["backbone.layers.8.1.running_var"]
    _, report = convert_reference_state_dict(state)
    assert "backbone.layers.8.1.running_mean" in report.unused
    key = "backbone.layers.4.2.conv.1.1.running_var"
    del state[key]
    with pytest.raises(CheckpointError, match=re.escape(key)):
        convert_reference_state_dict(state)
