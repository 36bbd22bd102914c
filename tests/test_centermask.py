"""CenterMask end to end: parameter counts and centermask2 checkpoint names, losses and
gradients, DefaultPredictor output, mask-score evaluation, and training on the embedded data."""
import pytest
import torch
from shared_files import assert_reference_checkpoint_loads
from tiny_models import batch_with_masks, predict_untrained, tiny_centermask_cfg, without_gradient
from train_net_runner import ROOT, losses_not_falling

from centermask import CenterMask
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from rtinst.engine import load_config

LOSSES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou"}


def _config(name, *opts):
    return load_config(str(ROOT / "configs" / "CenterMask" / name),
                       ["MODEL.WEIGHTS", "", "MODEL.MOBILENET_V2.PRETRAINED", "False", *opts],
                       device="cpu")


def _parameters(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config, opts, millions", [
    ("centermask_R_50_FPN_1x.yaml", [], 51.2),
    ("centermask_V_39_eSE_FPN_ms_3x.yaml", [], 52.6),
    ("centermask_V_39_eSE_FPN_ms_3x.yaml", ["MODEL.VOVNET.CONV_BODY", "V-39"], 49.0),
    ("centermask_V_39_eSE_FPN_ms_3x.yaml", ["MODEL.VOVNET.CONV_BODY", "V-57-eSE"], 68.9),
    ("centermask_V_39_eSE_FPN_ms_3x.yaml", ["MODEL.VOVNET.CONV_BODY", "V-19-eSE"], 37.6),
])
def test_parameter_counts_match_the_papers_table_4(config, opts, millions):
    # Table 4 counts whole CenterMask models (80 classes) with each backbone
    model = build_model(_config(config, *opts))
    assert isinstance(model, CenterMask)
    assert _parameters(model) == pytest.approx(millions * 1e6, rel=0.02)


def test_lite_heads_are_smaller_as_the_paper_says():
    # Sec. 2.6: FPN 256 -> 128, box towers 4 -> 2 convs, mask and scoring heads (4, 256) -> (2, 128)
    full = build_model(_config("centermask_V_39_eSE_FPN_ms_3x.yaml"))
    lite = build_model(_config("centermask_lite_V_39_eSE_FPN_ms_4x.yaml"))
    assert lite.backbone.output_shape()["p3"].channels == 128
    assert len(lite.roi_heads.mask_head.conv_norm_relus) == 2
    assert lite.roi_heads.mask_head.mask_fcn1.out_channels == 128
    assert len(lite.roi_heads.maskiou_head.convs) == 2
    assert _parameters(lite.backbone.bottom_up) == _parameters(full.backbone.bottom_up)
    assert _parameters(lite) < _parameters(full) - 10e6


@pytest.mark.parametrize("config, reference", [
    ("centermask_V_39_eSE_FPN_ms_3x.yaml", "centermask2_V_39_eSE_FPN_ms_3x"),
    ("centermask_lite_V_19_eSE_FPN_ms_4x.yaml", "centermask2_lite_V_19_eSE_FPN_ms_4x"),
])
def test_centermask2_checkpoints_load_by_name(config, reference, tmp_path):
    assert_reference_checkpoint_loads(build_model(_config(config)), reference, tmp_path)


def test_training_returns_every_loss_and_gradients_reach_every_part():
    torch.manual_seed(0)
    model = build_model(tiny_centermask_cfg()).train()
    with EventStorage():  # Detectron2's RoI sampling and mask loss log to it
        losses = model(batch_with_masks())
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_maskiou"] > 0
    sum(losses.values()).backward()
    heads = model.roi_heads
    parts = {
        "mask predictor": heads.mask_head.predictor.weight,
        "spatial attention": heads.mask_head.spatialAtt.conv.weight,
        "mask convs": heads.mask_head.mask_fcn1.weight,
        "maskiou head": heads.maskiou_head.maskiou.weight,
        "FCOS head": model.proposal_generator.fcos_head.cls_logits.weight,
        "FPN (p3-p5 feed the masks)": model.backbone.fpn_output3.weight,
        "bottom-up backbone": next(p for p in model.backbone.bottom_up.res5.parameters()),
    }
    assert without_gradient(parts) == []


@pytest.mark.parametrize("detach", [True, False])
def test_mask_iou_loss_reaches_the_mask_head_unless_its_inputs_are_detached(detach):
    # centermask2 lets the mask-scoring loss train the mask head and the features it reads;
    # MODEL.ROI_MASKIOU_HEAD.DETACH_INPUTS stops it at them
    torch.manual_seed(0)
    cfg = tiny_centermask_cfg()
    cfg.MODEL.ROI_MASKIOU_HEAD.DETACH_INPUTS = detach
    model = build_model(cfg).train()
    with EventStorage():
        losses = model(batch_with_masks())
    losses["loss_maskiou"].backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    outside = {name for name in trained if not name.startswith("roi_heads.maskiou_head.")}
    assert trained and bool(outside) != detach
    if not detach:
        assert any(name.startswith("roi_heads.mask_head.") for name in outside)


def test_default_predictor_returns_masks_at_image_resolution_and_mask_scores():
    cfg = tiny_centermask_cfg()
    cfg.MODEL.ROI_MASKIOU_HEAD.CLAMP_IOU = True
    out = predict_untrained(cfg, k=7)
    assert 0 < len(out) <= 7
    assert out.pred_masks.shape == (len(out), 150, 210) and out.pred_masks.dtype == torch.bool
    assert out.mask_scores.shape == out.scores.shape
    assert (out.mask_scores <= out.scores + 1e-6).all()  # scores x IoU, IoU clamped to [0, 1]


@pytest.mark.slow
def test_a_few_iterations_on_the_embedded_data_make_every_loss_fall(tmp_path):
    not_falling = losses_not_falling(
        ROOT / "configs/CenterMask/MNV2_FPN_shapes.yaml", tmp_path / "run", LOSSES,
        "MODEL.ROI_MASK_HEAD.NUM_CONV", "2", "MODEL.ROI_MASK_HEAD.CONV_DIM", "64",
        "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", "64",
    )
    assert not_falling == {}
