"""BlendMask end to end: AdelaiDet checkpoints load, gradients reach every part, DefaultPredictor
returns masks at image resolution, and training on the embedded data makes every loss fall."""
import pytest
import torch
from shared_files import assert_reference_checkpoint_loads
from tiny_models import batch_with_masks, predict_untrained, tiny_blendmask_cfg, without_gradient
from train_net_runner import ROOT, SHORT_SHAPES_RUN, losses_not_falling, run_train_net

from blendmask import BlendMask
from detectron2.modeling import build_model
from rtinst.engine import load_config

LOSSES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_basis_semantic", "loss_mask"}


@pytest.mark.parametrize("config, reference", [
    ("BlendMask/R_50_1x.yaml", "adet_blendmask_R_50_1x"),
    ("BlendMask/RT_R_50.yaml", "adet_blendmask_RT_R_50_4x_bn-head_syncbn_shtw"),
])
def test_adelaidet_checkpoints_load_by_name(config, reference, tmp_path):
    cfg = load_config(str(ROOT / "configs" / config), ["MODEL.WEIGHTS", ""], device="cpu")
    model = build_model(cfg)
    assert isinstance(model, BlendMask)
    assert_reference_checkpoint_loads(model, reference, tmp_path)


def test_training_returns_every_loss_and_gradients_reach_every_part():
    torch.manual_seed(0)
    model = build_model(tiny_blendmask_cfg()).train()
    losses = model(batch_with_masks())
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    parts = {
        "attentions (top layer)": model.top_layer.weight,
        "bases (predictor)": model.basis_module.tower[-1].weight,
        "semantic head": model.basis_module.seg_head[-1].weight,
        "FCOS head": model.proposal_generator.fcos_head.cls_logits.weight,
        "FPN": model.backbone.fpn_lateral3.weight,
        "bottom-up backbone": next(p for p in model.backbone.bottom_up.res5.parameters()),
    }
    assert without_gradient(parts) == []


def test_deeplabv3plus_bottom_module_on_backbone_features_c3_c5():
    cfg = tiny_blendmask_cfg()
    cfg.MODEL.BASIS_MODULE.NAME = "DeepLabV3Plus"
    cfg.MODEL.BASIS_MODULE.IN_FEATURES = ["res3", "res5"]
    cfg.MODEL.BASIS_MODULE.NUM_CONVS = 2
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert model.basis_module.out_stride == 8
    losses = model(batch_with_masks())
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    losses["loss_mask"].backward()
    assert model.basis_module.low_level[0].weight.grad.abs().sum() > 0
    assert model.backbone.bottom_up.res3[0].conv[0][0].weight.grad.abs().sum() > 0


def test_mask_loss_gradient_reaches_the_backbone_through_bases_and_attentions():
    torch.manual_seed(0)
    model = build_model(tiny_blendmask_cfg()).train()
    model(batch_with_masks())["loss_mask"].backward()
    assert model.top_layer.weight.grad.abs().sum() > 0
    assert model.basis_module.tower[-1].weight.grad.abs().sum() > 0
    assert model.backbone.fpn_lateral3.weight.grad.abs().sum() > 0


def test_default_predictor_returns_masks_at_image_resolution():
    out = predict_untrained(tiny_blendmask_cfg(), k=7)
    assert 0 < len(out) <= 7  # Detectron2's post-processing drops empty (untrained) boxes
    assert out.pred_masks.shape == (len(out), 150, 210) and out.pred_masks.dtype == torch.bool
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 2] <= 210).all() and (boxes[:, 3] <= 150).all()


@pytest.mark.slow
def test_a_few_iterations_on_the_embedded_data_make_every_loss_fall(tmp_path):
    not_falling = losses_not_falling(
        ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml", tmp_path / "run", LOSSES,
        "MODEL.BASIS_MODULE.CONVS_DIM", "64", "MODEL.BLENDMASK.ATTN_SIZE", "7",
    )
    assert not_falling == {}


@pytest.mark.ddp
def test_two_process_data_parallel_training(tmp_path):
    """Two gloo workers train BlendMask to the end through train_net.py: every parameter gets a
    gradient (DDP fails on unused ones) and the normalisers' collectives do not deadlock (that
    the workers compute what one does: test_data_parallel.py)."""
    out = tmp_path / "ddp"
    res = run_train_net(ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml", "--num-gpus", "2",
                        *SHORT_SHAPES_RUN, "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", str(out),
                        timeout=600)
    assert "World size: 2" in res.stdout + res.stderr
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 3
