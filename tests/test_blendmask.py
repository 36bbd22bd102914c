"""BlendMask end to end: AdelaiDet checkpoints load, gradients reach every part, DefaultPredictor
returns masks at image resolution, and training on the embedded data makes every loss fall."""
import numpy as np
import pytest
import torch
from shared_files import assert_same_parameters, reference_state_dict
from tiny_fcos import EVERY_LEVEL_BOXES, synthetic_batch, tiny_fcos_cfg
from train_net_runner import ROOT, read_metrics, run_train_net

from blendmask import BlendMask
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import BitMasks
from rtinst.checkpoint import SafeCheckpointer
from rtinst.engine import load_config

LOSSES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_basis_semantic", "loss_mask"}


def tiny_blendmask_cfg():
    cfg = tiny_fcos_cfg()
    cfg.MODEL.META_ARCHITECTURE = "BlendMask"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.BASIS_MODULE.NUM_CLASSES = 3
    cfg.MODEL.BASIS_MODULE.NORM = "BN"
    cfg.MODEL.BASIS_MODULE.CONVS_DIM = 32
    cfg.MODEL.BLENDMASK.ATTN_SIZE = 4
    cfg.MODEL.BLENDMASK.BOTTOM_RESOLUTION = 16
    return cfg


def batch_with_masks():
    """tiny_fcos's synthetic rectangles with their masks (the rectangles themselves)."""
    batch = synthetic_batch(EVERY_LEVEL_BOXES)
    for item in batch:
        instances = item["instances"]
        masks = torch.zeros(len(instances), 128, 128, dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, instances.gt_boxes.tensor.long().tolist()):
            mask[y0:y1, x0:x1] = True
        instances.gt_masks = BitMasks(masks)
    return batch


@pytest.mark.parametrize("config, reference", [
    ("BlendMask/R_50_1x.yaml", "adet_blendmask_R_50_1x"),
    ("BlendMask/RT_R_50.yaml", "adet_blendmask_RT_R_50_4x_bn-head_syncbn_shtw"),
])
def test_adelaidet_checkpoints_load_by_name(config, reference, tmp_path):
    cfg = load_config(str(ROOT / "configs" / config), ["MODEL.WEIGHTS", ""], device="cpu")
    model = build_model(cfg)
    assert isinstance(model, BlendMask)
    assert_same_parameters(model, reference)
    state = reference_state_dict(reference)
    path = tmp_path / "adelaidet.pth"
    torch.save({"model": state}, path)
    SafeCheckpointer(model).load(str(path))
    loaded = model.state_dict()
    for key in ("top_layer.weight", "basis_module.tower.0.0.weight",
                "proposal_generator.fcos_head.cls_logits.bias"):
        torch.testing.assert_close(loaded[key], state[key])


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
    no_gradient = [name for name, p in parts.items() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_gradient == []


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
    cfg = tiny_blendmask_cfg()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # untrained: keep every candidate
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 7
    image = np.random.default_rng(0).integers(0, 255, (150, 210, 3), dtype=np.uint8)
    out = DefaultPredictor(cfg)(image)["instances"]
    assert 0 < len(out) <= 7  # Detectron2's post-processing drops empty (untrained) boxes
    assert out.pred_masks.shape == (len(out), 150, 210) and out.pred_masks.dtype == torch.bool
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 2] <= 210).all() and (boxes[:, 3] <= 150).all()


def test_a_few_iterations_on_the_embedded_data_make_every_loss_fall(tmp_path):
    out = tmp_path / "run"
    run_train_net(
        ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml",
        "INPUT.MIN_SIZE_TRAIN", "(128,160)", "INPUT.MAX_SIZE_TRAIN", "224",
        "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1",
        "MODEL.FCOS.NUM_BOX_CONVS", "1", "MODEL.BASIS_MODULE.CONVS_DIM", "64",
        "MODEL.BLENDMASK.ATTN_SIZE", "7", "SOLVER.IMS_PER_BATCH", "4",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.MAX_ITER", "60", "SOLVER.STEPS", "()",
        "DATALOADER.NUM_WORKERS", "1", "SEED", "3", "DATASETS.TEST", "()",
        "OUTPUT_DIR", str(out),
    )
    records = [r for r in read_metrics(out) if "loss_mask" in r]
    assert len(records) >= 3
    first, last = records[0], records[-1]
    not_falling = {k: (first[k], last[k]) for k in LOSSES if not last[k] < first[k]}
    assert not_falling == {}
