"""FCOS losses against formulas written out here, their gradients, and a short overfit run."""
import math

import pytest
import torch
from torch import nn
from tiny_models import SMALL_BOXES, synthetic_batch, tiny_fcos_cfg

from detectron2.modeling import build_model
from rtinst.modeling.fcos import FCOSLosses, ltrb_iou_loss

ALPHA, GAMMA = 0.25, 2.0
NUM_CLASSES = 2

# three locations: class 0, background, class 1
LOGITS = torch.tensor([[1.5, -2.0], [0.3, -0.7], [-1.0, 0.5]])
LABELS = torch.tensor([0, NUM_CLASSES, 1])
REG_PRED = torch.tensor([[2.0, 3.0, 4.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 1.0, 2.0]])
REG_TARGET = torch.tensor([[3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0], [2.0, 1.0, 3.0, 1.0]])
CTR_LOGITS = torch.tensor([0.2, -1.0, -0.4])
CTR_TARGETS = torch.tensor([1.0, 0.0, math.sqrt(2 / 3 * 1.0)])


def _focal(x, y):
    p = 1 / (1 + math.exp(-x))
    ce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = ALPHA * y + (1 - ALPHA) * (1 - y)
    return alpha_t * (1 - p_t) ** GAMMA * ce


def _box(ltrb):
    """Distances from the point (0, 0) to an XYXY box."""
    l, t, r, b = ltrb
    return (-l, -t, r, b)


def _iou_and_giou(pred, target):
    px0, py0, px1, py1 = _box(pred)
    tx0, ty0, tx1, ty1 = _box(target)
    inter = max(0, min(px1, tx1) - max(px0, tx0)) * max(0, min(py1, ty1) - max(py0, ty0))
    union = (px1 - px0) * (py1 - py0) + (tx1 - tx0) * (ty1 - ty0) - inter
    hull = (max(px1, tx1) - min(px0, tx0)) * (max(py1, ty1) - min(py0, ty0))
    iou = inter / union
    return iou, iou - (hull - union) / hull


def _bce(x, y):
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _losses(loc_loss_type="giou", **overrides):
    inputs = dict(logits=LOGITS, bbox_reg=REG_PRED, ctrness=CTR_LOGITS, labels=LABELS,
                  reg_targets=REG_TARGET, ctrness_targets=CTR_TARGETS)
    inputs.update(overrides)
    return FCOSLosses(NUM_CLASSES, ALPHA, GAMMA, loc_loss_type)(**inputs)


def test_classification_loss_is_focal_loss_over_num_positives():
    total = sum(
        _focal(LOGITS[i, k].item(), float(LABELS[i].item() == k))
        for i in range(3) for k in range(NUM_CLASSES)
    )
    assert _losses()["loss_fcos_cls"].item() == pytest.approx(total / 2, rel=1e-5)


@pytest.mark.parametrize("loss_type", ["iou", "linear_iou", "giou"])
def test_localisation_loss_is_centerness_weighted_iou_loss(loss_type):
    per_location = []
    for i in (0, 2):
        iou, giou = _iou_and_giou(REG_PRED[i].tolist(), REG_TARGET[i].tolist())
        losses = {"iou": -math.log(iou), "linear_iou": 1 - iou, "giou": 1 - giou}
        per_location.append(losses[loss_type])
    weights = [CTR_TARGETS[0].item(), CTR_TARGETS[2].item()]
    expected = sum(w * v for w, v in zip(weights, per_location)) / sum(weights)
    assert _losses(loss_type)["loss_fcos_loc"].item() == pytest.approx(expected, rel=1e-5)


def test_giou_of_disjoint_boxes_matches_torchvision():
    from torchvision.ops import generalized_box_iou_loss

    pred = torch.tensor([[1.0, 1.0, 0.5, 1.0]])  # box (-1, -1, 0.5, 1)
    target = torch.tensor([[-2.0, 1.0, 4.0, 1.0]])  # box (2, -1, 4, 1): no overlap
    expected = generalized_box_iou_loss(
        torch.tensor([[-1.0, -1.0, 0.5, 1.0]]), torch.tensor([[2.0, -1.0, 4.0, 1.0]])
    )
    assert ltrb_iou_loss(pred, target, "giou").item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.isfinite(ltrb_iou_loss(pred, target, "iou")).all()


def test_centerness_loss_is_bce_over_num_positives():
    expected = (_bce(CTR_LOGITS[0].item(), CTR_TARGETS[0].item())
                + _bce(CTR_LOGITS[2].item(), CTR_TARGETS[2].item())) / 2
    assert _losses()["loss_fcos_ctr"].item() == pytest.approx(expected, rel=1e-5)


def test_unknown_loc_loss_type_is_rejected():
    with pytest.raises(ValueError, match="LOC_LOSS_TYPE"):
        _losses("l1")


def test_no_positives_gives_finite_losses_with_gradient():
    predictions = [t.clone().requires_grad_() for t in (LOGITS, REG_PRED, CTR_LOGITS)]
    losses = _losses(logits=predictions[0], bbox_reg=predictions[1], ctrness=predictions[2],
                     labels=torch.full((3,), NUM_CLASSES), ctrness_targets=torch.zeros(3))
    assert losses["loss_fcos_loc"].item() == 0 and losses["loss_fcos_ctr"].item() == 0
    # all negatives: the focal loss is summed and divided by max(num_pos, 1) = 1
    expected_cls = sum(_focal(x, 0.0) for x in LOGITS.flatten().tolist())
    assert losses["loss_fcos_cls"].item() == pytest.approx(expected_cls, rel=1e-5)
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in predictions)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(tiny_fcos_cfg()).train()


def test_gradient_reaches_every_head_parameter_and_the_backbone(model):
    head = model.proposal_generator.fcos_head
    # a positive regression bias keeps every relu(s * x) output active, so that each level's scale
    # (the batch has positives on every level) gets a non-zero gradient
    nn.init.constant_(head.bbox_pred.bias, 1.0)
    sum(model(synthetic_batch()).values()).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for name, parameter in model.backbone.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert model.backbone.bottom_up.stem[0][0].weight.grad.abs().sum() > 0
    assert model.backbone.top_block.p7.weight.grad.abs().sum() > 0


def test_sgd_on_one_batch_lowers_the_loss(model):
    batch = synthetic_batch(SMALL_BOXES, size=64)
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9
    )
    history = []
    for _ in range(20):
        losses = model(batch)
        total = sum(losses.values())
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert sum(history[-5:]) / 5 < 0.65 * history[0], history
