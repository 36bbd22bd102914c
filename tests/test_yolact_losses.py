"""YOLACT's matching and losses (Sec. 3, YOLACT++ Sec. 5.2) on small cases computed by hand,
following the reference's (dbolya/yolact) arithmetic."""
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks

try:
    import yolact  # noqa: F401  (installed by scripts/setup.sh once the project has its package)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "projects" / "YOLACT"))

from yolact import losses as yolact_losses  # noqa: E402
from yolact.losses import (  # noqa: E402
    YOLACTLoss,
    box_loss,
    classification_loss,
    downsample_masks,
    lincomb_mask_loss,
    mask_iou_loss,
    mask_iou_targets,
    ohem_negatives,
    ohem_scores,
    semantic_segmentation_loss,
)
from yolact.matching import force_best_anchors, match_anchors  # noqa: E402
from yolact.outputs import YOLACTOutputs  # noqa: E402

LN2 = math.log(2)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _smooth_l1(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def _softplus(x):
    return math.log1p(math.exp(x))


def _boxes(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ---------------------------------------------------------------------------------------- matching
def test_thresholds_and_neutral_band():
    gt = _boxes([[0, 0, 10, 10]])
    anchors = _boxes([
        [0, 0, 10, 10],  # IoU 1        -> positive
        [0, 0, 10, 20],  # IoU 0.5      -> positive (>= 0.5)
        [0, 0, 10, 22],  # IoU 0.4545   -> neutral
        [0, 0, 10, 24],  # IoU 0.4167   -> neutral
        [0, 0, 10, 26],  # IoU 0.3846   -> negative
        [50, 50, 60, 60],  # IoU 0      -> negative
    ])
    matched, state = match_anchors(anchors, gt, None, 0.5, 0.4, 0.7)
    assert state.tolist() == [1, 1, -1, -1, 0, 0]
    assert matched.tolist() == [0] * 6


def test_forced_anchor_for_a_gt_below_the_negative_threshold():
    # the 4x4 object's best anchor has IoU 16 / 100: it is still made positive
    gt = _boxes([[0, 0, 10, 10], [50, 50, 54, 54]])
    anchors = _boxes([[0, 0, 10, 10], [48, 48, 58, 58], [40, 40, 50, 50], [70, 70, 90, 90]])
    matched, state = match_anchors(anchors, gt)
    assert state.tolist() == [1, 1, 0, 0]
    assert matched[:2].tolist() == [0, 1]


def test_forced_anchor_even_without_any_overlap():
    matched, state = match_anchors(_boxes([[0, 0, 10, 10], [20, 20, 30, 30]]),
                                   _boxes([[100, 100, 110, 110]]))
    assert state.tolist() == [1, 0]  # ties (all 0) go to the first anchor, as torch.max
    assert matched.tolist() == [0, 0]


def test_competing_gts_are_resolved_highest_overlap_first():
    # GT 0 (0..11 high) and GT 1 (0..10) both prefer anchor 0; GT 1's IoU there is higher (1 vs
    # 0.909), so it is paired first; GT 0 then gets its best remaining anchor, anchor 1, although
    # anchor 1 overlaps GT 1 more (0.9 vs 0.818) -- the forced pair overrides the per-anchor max.
    gt = _boxes([[0, 0, 10, 11], [0, 0, 10, 10]])
    anchors = _boxes([[0, 0, 10, 10], [0, 0, 10, 9], [30, 30, 40, 40]])
    matched, state = match_anchors(anchors, gt)
    assert matched[:2].tolist() == [1, 0]
    assert state.tolist() == [1, 1, 0]
    # the pairs, in the order they were fixed
    from detectron2.structures import pairwise_iou

    anchor_index, gt_index = force_best_anchors(pairwise_iou(Boxes(gt), Boxes(anchors)))
    assert anchor_index.tolist() == [0, 1] and gt_index.tolist() == [1, 0]


def test_gt_order_does_not_change_the_forced_pairs():
    gt = _boxes([[0, 0, 10, 10], [0, 0, 10, 11]])  # the same two objects, swapped
    anchors = _boxes([[0, 0, 10, 10], [0, 0, 10, 9], [30, 30, 40, 40]])
    matched, _ = match_anchors(anchors, gt)
    assert matched[:2].tolist() == [0, 1]


def test_crowds_neutralise_non_positive_anchors_only():
    gt = _boxes([[150, 150, 170, 170]])
    crowd = _boxes([[100, 100, 200, 200]])
    anchors = _boxes([
        [150, 150, 170, 170],  # positive inside the crowd: stays positive
        [110, 110, 130, 130],  # negative, all of it in the crowd -> neutral
        [90, 110, 110, 130],  # negative, half in the crowd (0.5 <= 0.7): stays negative
        [86, 100, 106, 120],  # 0.7 of it in the crowd: not above 0.7, stays negative
        [0, 0, 20, 20],  # far: negative
    ])
    _, state = match_anchors(anchors, gt, crowd, 0.5, 0.4, 0.7)
    assert state.tolist() == [1, -1, 0, 0, 0]
    _, state = match_anchors(anchors, gt, crowd, 0.5, 0.4, 0.25)
    assert state.tolist() == [1, -1, -1, -1, 0]


def test_no_gt_everything_negative_but_crowds():
    anchors = _boxes([[0, 0, 10, 10], [20, 20, 30, 30]])
    matched, state = match_anchors(anchors, torch.zeros(0, 4))
    assert state.tolist() == [0, 0] and matched.tolist() == [0, 0]
    _, state = match_anchors(anchors, torch.zeros(0, 4), _boxes([[15, 15, 35, 35]]))
    assert state.tolist() == [0, -1]


# ------------------------------------------------------------------------------------------- OHEM
def test_ohem_scores_are_the_background_cross_entropy():
    logits = torch.randn(2, 7, 4)
    expected = F.cross_entropy(logits.reshape(-1, 4), torch.zeros(14, dtype=torch.long),
                               reduction="none").reshape(2, 7)
    assert torch.allclose(ohem_scores(logits), expected, atol=1e-6)


def test_ohem_keeps_the_three_hardest_negatives_per_positive():
    # image 0: 1 positive, a neutral with the highest score, 7 negatives -> the 3 hardest
    # image 1: 2 positives, only 3 negatives -> all 3 (fewer than 6)
    # image 2: no positive -> none
    state = torch.tensor([
        [1, -1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, -1, -1, -1, -1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, -1, 0],
    ])
    scores = torch.tensor([
        [9.0, 8.0, 0.1, 0.7, 0.3, 0.9, 0.2, 0.5, 0.4],
        [9.0, 9.0, 8.0, 8.0, 8.0, 8.0, 0.1, 0.2, 0.3],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ])
    negatives = ohem_negatives(scores, state, 3)
    assert torch.nonzero(negatives[0])[:, 0].tolist() == [3, 5, 7]
    assert torch.nonzero(negatives[1])[:, 0].tolist() == [6, 7, 8]
    assert not negatives[2].any()
    assert negatives.sum(dim=1).tolist() == [3, 3, 0]


def test_ohem_ratio():
    state = torch.tensor([[1] + [0] * 10])
    scores = torch.arange(11, dtype=torch.float32)[None]
    assert torch.nonzero(ohem_negatives(scores, state, 2)[0])[:, 0].tolist() == [9, 10]


# ------------------------------------------------------------------------------- boxes and classes
def test_classification_loss_by_hand():
    # anchor 0: positive of class 1 (target 2); anchor 1: negative; anchor 2: not selected
    logits = torch.tensor([[0.0, 0.0, 1.0], [0.5, 1.0, -1.0], [0.0, 5.0, 0.0]])
    targets = torch.tensor([2, 0, 0])
    selected = torch.tensor([True, True, False])
    positive = math.log(1 + 1 + math.e) - 1
    negative = math.log(math.exp(0.5) + math.e + math.exp(-1)) - 0.5
    loss = classification_loss(logits, targets, selected)
    assert loss.item() == pytest.approx(positive + negative, rel=1e-6)


def test_box_loss_by_hand():
    pred = torch.tensor([[0.5, -2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.9, 0.0]])
    expected = 0.125 + 1.5 + 0 + 0.5 + 0.5 * 0.81
    assert box_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------ masks
def test_downsampled_gt_is_binarised_bilinear():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 0:2, 0:2] = True  # a whole 2x2 cell -> 1
    mask[0, 5, 4:6] = True  # half of the cell (2, 2) -> 0.5, not above 0.5 -> 0
    mask[0, 6:8, 6] = True  # half of the cell (3, 3) -> 0
    expected = torch.zeros(1, 4, 4)
    expected[0, 0, 0] = 1
    assert torch.equal(downsample_masks(mask, (4, 4)), expected)


def test_lincomb_mask_loss_crop_and_box_normalisation_by_hand():
    # zero coefficients: p = 0.5 inside the crop, 0 outside. Box (0.5, 0.5)-(1.5, 2.5): the crop,
    # padded by 1, keeps columns x - 1 <= i < x2 + 1 -> 0..2 and rows 0..3 (12 pixels); its area
    # is 1 x 2. Ground truth: pixel (3, 3) lies outside the crop, where BCE(0, 1) is clamped to 100.
    coefficients = torch.zeros(1, 2)
    prototypes = torch.rand(2, 4, 4)
    gt = torch.zeros(1, 4, 4)
    gt[0, 1, 1] = gt[0, 3, 3] = 1
    boxes = torch.tensor([[0.5, 0.5, 1.5, 2.5]])
    loss, probabilities = lincomb_mask_loss(coefficients, prototypes, gt, boxes)
    assert loss.item() == pytest.approx((12 * LN2 + 100) / (1 * 2) * 16, rel=1e-6)
    kept = torch.zeros(4, 4)
    kept[0:4, 0:3] = 0.5
    assert torch.equal(probabilities[0], kept)


def test_lincomb_mask_loss_assembles_sigmoid_of_prototypes_times_coefficients():
    prototypes = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])
    prototypes[1, 0:2, 0:2] = 1
    coefficients = torch.tensor([[-1.0, 3.0]])  # logit 2 in the top-left 2x2, -1 elsewhere
    gt = torch.zeros(1, 4, 4)
    gt[0, 0:2, 0:2] = 1
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])  # crop: rows/columns 0..2
    loss, _ = lincomb_mask_loss(coefficients, prototypes, gt, boxes)
    per_pixel = 4 * -math.log(_sigmoid(2)) + 5 * -math.log(1 - _sigmoid(-1))
    assert loss.item() == pytest.approx(per_pixel / 4 * 16, rel=1e-6)


def test_semantic_segmentation_loss_by_hand():
    # 8x8 masks on 4x4 logits: two class-1 instances (union), one class-0 instance
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[0, 0:2, 0:4] = True  # class 1: cells (0, 0), (0, 1)
    masks[1, 0:4, 0:2] = True  # class 1: cells (0, 0), (1, 0)
    masks[2, 6:8, 6:8] = True  # class 0: cell (3, 3)
    classes = torch.tensor([1, 1, 0])
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 1, 0, 0] = 2.0
    logits[0, 0, 0, 0] = 1.0
    loss = semantic_segmentation_loss(logits, [masks], [classes])
    # BCE-with-logits: softplus(x) - x * t; zeros give log 2
    class0 = _softplus(1.0) + 15 * LN2  # (0, 0): x 1, t 0; the rest x 0 (t 1 at (3, 3))
    class1 = (_softplus(2.0) - 2.0) + 15 * LN2  # (0, 0): x 2, t 1; the rest x 0
    assert loss.item() == pytest.approx((class0 + class1) / 16, rel=1e-6)


def test_mask_iou_targets_and_loss_by_hand():
    probabilities = torch.zeros(2, 4, 4)
    probabilities[0, 0, 0:3] = 0.9  # 3 pixels above 0.5
    probabilities[0, 1, 0] = 0.5  # not above 0.5
    probabilities[1, 2:4, 2:4] = 0.6
    gt = torch.zeros(2, 4, 4)
    gt[0, 0:2, 0:2] = 1  # 4 pixels, 2 shared: IoU 2 / 5
    gt[1, 2:4, 2:4] = 1  # identical: IoU 1
    targets = mask_iou_targets(probabilities, gt)
    assert targets.tolist() == pytest.approx([0.4, 1.0])
    predicted = torch.tensor([[0.9, 0.1, 0.3], [0.0, 0.2, -1.0]])
    classes = torch.tensor([2, 0])
    loss = mask_iou_loss(predicted, classes, targets)
    assert loss.item() == pytest.approx(_smooth_l1(0.3 - 0.4) + _smooth_l1(-1.0), rel=1e-6)


# ----------------------------------------------------------------------------------- whole loss
C = 2  # classes
SIZE = 40  # input pixels; prototypes 4x4 (10 pixels each), semantic logits 2x2
ANCHORS = _boxes([
    [0, 0, 20, 20],  # a0: IoU 1 with the object -> positive
    [0, 0, 20, 45],  # a1: IoU 0.444 -> neutral
    [20, 20, 40, 40],  # a2..a5: negatives
    [0, 20, 20, 40],
    [20, 0, 40, 20],
    [25, 0, 40, 15],
])
# a0 positive of class 1 (target 2); a1 neutral (hard); a2 > a3 > a4 > a5 in OHEM score
LOGITS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 3.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0],
                       [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
DELTAS_A0 = [0.5, -2.0, 0.0, 1.0]  # the object's deltas from a0 are 0
SEMANTIC = torch.tensor([[[0.0, 1.0], [0.0, 0.0]], [[2.0, 0.0], [0.0, -1.0]]])


class MeanIoUHead(nn.Module):
    """A stand-in mask-IoU head: a linear map of the mean mask probability."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, C)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0], [2.0]]))
            self.linear.bias.zero_()

    def forward(self, masks):  # (P, 1, Hp, Wp) -> (P, C)
        return self.linear(masks.mean(dim=(1, 2, 3))[:, None])


def _object(crowd=False, polygon=False, box=(0, 0, 20, 20), cls=1):
    x1, y1, x2, y2 = box
    if polygon:
        masks = PolygonMasks([[[x1, y1, x2, y1, x2, y2, x1, y2]]])
    else:
        mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
        mask[0, y1:y2, x1:x2] = True
        masks = BitMasks(mask)
    return Instances((SIZE, SIZE), gt_boxes=Boxes(_boxes([box])), gt_classes=torch.tensor([cls]),
                     gt_masks=masks, gt_is_crowd=torch.tensor([crowd]))


def _empty_image():
    return Instances((SIZE, SIZE), gt_boxes=Boxes(torch.zeros(0, 4)),
                     gt_classes=torch.zeros(0, dtype=torch.long),
                     gt_masks=BitMasks(torch.zeros(0, SIZE, SIZE, dtype=torch.bool)))


def _outputs(num_images=1, requires_grad=False):
    a = len(ANCHORS)
    deltas = torch.randn(num_images, a, 4)
    deltas[:, 0] = torch.tensor(DELTAS_A0)
    coefficients = torch.rand(num_images, a, 2) * 2 - 1
    coefficients[:, 0] = torch.tensor([-1.0, 3.0])
    prototypes = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])
    prototypes[1, 0:2, 0:2] = 1
    outputs = YOLACTOutputs(deltas, LOGITS.repeat(num_images, 1, 1), coefficients,
                            prototypes.repeat(num_images, 1, 1, 1),
                            SEMANTIC.repeat(num_images, 1, 1, 1))
    if requires_grad:
        outputs = YOLACTOutputs(*(t.clone().requires_grad_() for t in outputs))
    return outputs


def _criterion(**kwargs):
    kwargs.setdefault("mask_iou_min_area", 3.0)  # the object covers 4 prototype pixels
    return YOLACTLoss(num_classes=C, box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                      **kwargs)


# expected values for the one-object image (one positive)
POSITIVE_CE = math.log(2 + math.e) - 1
HARD_NEGATIVES = math.log(2 + math.e ** 2) + math.log(2 + math.e) + math.log(3)  # a2, a3, a4
CONF = POSITIVE_CE + HARD_NEGATIVES
BOX = 1.5 * (0.125 + 1.5 + 0 + 0.5)
# mask of a0: logit 2 in the 2x2 object, -1 elsewhere; crop rows/columns 0..2 (9 pixels)
MASK_BCE = 4 * -math.log(_sigmoid(2)) + 5 * -math.log(1 - _sigmoid(-1))
MASK = 6.125 * (MASK_BCE / (2 * 2) * 16) / 4 / 4
# semantic target on 2x2: class 1 at (0, 0); class 0 empty
SEMANTIC_LOSS = ((_softplus(0) + _softplus(1) + 2 * _softplus(0))
                 + (_softplus(2) - 2 + 2 * _softplus(0) + _softplus(-1))) / 4
# mask IoU: thresholded mask = the object (IoU 1); the head predicts 2 * mean probability
MEAN_PROBABILITY = (4 * _sigmoid(2) + 5 * _sigmoid(-1)) / 16
MASK_IOU = 25 * _smooth_l1(2 * MEAN_PROBABILITY - 1)


def test_whole_loss_by_hand():
    losses = _criterion()(_outputs(), ANCHORS, [_object()], MeanIoUHead())
    assert set(losses) == {"loss_conf", "loss_box", "loss_mask", "loss_semantic", "loss_mask_iou"}
    assert losses["loss_conf"].item() == pytest.approx(CONF, rel=1e-6)
    assert losses["loss_box"].item() == pytest.approx(BOX, rel=1e-6)
    assert losses["loss_mask"].item() == pytest.approx(MASK, rel=1e-6)
    assert losses["loss_semantic"].item() == pytest.approx(SEMANTIC_LOSS, rel=1e-6)
    assert losses["loss_mask_iou"].item() == pytest.approx(MASK_IOU, rel=1e-6)


def test_optional_losses_and_weights():
    outputs = _outputs()._replace(semantic_logits=None)
    weights = {"conf": 2.0, "box": 1.0, "mask": 1.0}
    losses = _criterion(weights=weights)(outputs, ANCHORS, [_object()])
    assert set(losses) == {"loss_conf", "loss_box", "loss_mask"}
    assert losses["loss_conf"].item() == pytest.approx(2 * CONF, rel=1e-6)
    assert losses["loss_box"].item() == pytest.approx(BOX / 1.5, rel=1e-6)
    assert losses["loss_mask"].item() == pytest.approx(MASK / 6.125, rel=1e-6)
    with pytest.raises(ValueError, match="Unknown"):
        _criterion(weights={"cls": 1.0})


def test_small_masks_get_no_mask_iou_loss():
    # the object covers 4 prototype pixels, not above 25: a zero tied to the head
    head = MeanIoUHead()
    losses = _criterion(mask_iou_min_area=25.0)(_outputs(), ANCHORS, [_object()], head)
    assert losses["loss_mask_iou"].item() == 0
    losses["loss_mask_iou"].backward()
    assert head.linear.weight.grad is not None


def test_polygon_masks_give_the_same_losses():
    bit = _criterion()(_outputs(), ANCHORS, [_object()], MeanIoUHead())
    poly = _criterion()(_outputs(), ANCHORS, [_object(polygon=True)], MeanIoUHead())
    for name in ("loss_mask", "loss_semantic", "loss_mask_iou"):
        assert poly[name].item() == pytest.approx(bit[name].item(), rel=1e-6)


def test_crowds_are_neither_matched_nor_segmented():
    # a crowd covering a2 makes it neutral: OHEM takes a3, a4, a5 instead; its class and mask are
    # unused (the semantic target does not change), and it is no box to regress
    targets = [Instances.cat([_object(), _object(crowd=True, box=(20, 20, 40, 40), cls=0)])]
    losses = _criterion()(_outputs(), ANCHORS, targets, MeanIoUHead())
    negatives = math.log(2 + math.e) + math.log(3) + math.log(2 + math.e) - 1  # a3, a4, a5
    assert losses["loss_conf"].item() == pytest.approx(POSITIVE_CE + negatives, rel=1e-6)
    assert losses["loss_box"].item() == pytest.approx(BOX, rel=1e-6)
    assert losses["loss_mask"].item() == pytest.approx(MASK, rel=1e-6)
    assert losses["loss_semantic"].item() == pytest.approx(SEMANTIC_LOSS, rel=1e-6)


def test_forced_anchor_box_deltas_by_hand():
    # one anchor (0, 0, 10, 10) and an object (1, 2, 11, 14): IoU 72 / 148 < 0.4, forced positive;
    # deltas (10 * 1 / 10, 10 * 3 / 10, 5 log 1, 5 log 1.2) against zero predictions
    target = Instances((20, 20), gt_boxes=Boxes(_boxes([[1, 2, 11, 14]])),
                       gt_classes=torch.tensor([0]),
                       gt_masks=BitMasks(torch.ones(1, 20, 20, dtype=torch.bool)))
    outputs = YOLACTOutputs(torch.zeros(1, 1, 4), torch.zeros(1, 1, 2), torch.zeros(1, 1, 2),
                            torch.ones(1, 2, 4, 4))
    losses = _criterion()(outputs, _boxes([[0, 0, 10, 10]]), [target])
    expected = 1.5 * (0.5 + 2.5 + 0 + _smooth_l1(5 * math.log(1.2)))
    assert losses["loss_box"].item() == pytest.approx(expected, rel=1e-6)


def test_normalised_by_the_batch_positives_and_images():
    # two copies of the image: sums double, positives and images double -> the same losses;
    # with an image without objects beside it: that image adds no positive, no OHEM negative
    # (3 x 0), no box or mask term; its semantic logits are trained towards 0, over 2 images
    single = _criterion()(_outputs(), ANCHORS, [_object()], MeanIoUHead())
    double = _criterion()(_outputs(2), ANCHORS, [_object(), _object()], MeanIoUHead())
    for name, value in single.items():
        assert double[name].item() == pytest.approx(value.item(), rel=1e-6)
    mixed = _criterion()(_outputs(2), ANCHORS, [_object(), _empty_image()], MeanIoUHead())
    for name in ("loss_conf", "loss_box", "loss_mask", "loss_mask_iou"):
        assert mixed[name].item() == pytest.approx(single[name].item(), rel=1e-6)
    empty_semantic = (_softplus(1) + 3 * _softplus(0) + _softplus(2) + 2 * _softplus(0)
                      + _softplus(-1)) / 4
    assert mixed["loss_semantic"].item() == pytest.approx(
        (SEMANTIC_LOSS + empty_semantic) / 2, rel=1e-6)


def test_positives_are_shared_with_the_other_workers(monkeypatch):
    # as if another worker had 3 positives: the mean count is 2
    monkeypatch.setattr(yolact_losses, "mean_over_workers", lambda count: (count + 3) / 2)
    losses = _criterion()(_outputs(), ANCHORS, [_object()], MeanIoUHead())
    for name, value in (("loss_conf", CONF), ("loss_box", BOX), ("loss_mask", MASK),
                        ("loss_mask_iou", MASK_IOU)):
        assert losses[name].item() == pytest.approx(value / 2, rel=1e-6)
    assert losses["loss_semantic"].item() == pytest.approx(SEMANTIC_LOSS, rel=1e-6)


def test_batch_without_objects():
    outputs = _outputs(requires_grad=True)
    head = MeanIoUHead()
    losses = _criterion()(outputs, ANCHORS, [_empty_image()], head)
    for name in ("loss_conf", "loss_box", "loss_mask", "loss_mask_iou"):
        assert losses[name].item() == 0
    empty_semantic = (_softplus(1) + 3 * _softplus(0) + _softplus(2) + 2 * _softplus(0)
                      + _softplus(-1)) / 4
    assert losses["loss_semantic"].item() == pytest.approx(empty_semantic, rel=1e-6)
    sum(losses.values()).backward()
    assert all(t.grad is not None for t in outputs)
    assert torch.isfinite(outputs.semantic_logits.grad).all()


def test_masks_per_image_subsample_and_rescale():
    # three positives (a0 and two copies of it) for the same object; at most 2 masks per image:
    # the loss is 3 / 2 times the sum over the two kept by torch.randperm (reference behaviour)
    anchors = torch.cat([ANCHORS, ANCHORS[:1], ANCHORS[:1]])
    outputs = _outputs()
    coefficients = torch.cat([outputs.coefficients,
                              torch.tensor([[[0.0, 1.0], [1.0, -2.0]]])], dim=1)
    outputs = outputs._replace(
        box_deltas=torch.zeros(1, len(anchors), 4),
        class_logits=torch.zeros(1, len(anchors), C + 1), coefficients=coefficients)
    prototypes = outputs.prototypes[0]
    gt = downsample_masks(_object().gt_masks.tensor, (4, 4)).expand(3, 4, 4)
    per_instance, _ = lincomb_mask_loss(coefficients[0, [0, 6, 7]], prototypes, gt,
                                        _boxes([[0, 0, 2, 2]] * 3))
    torch.manual_seed(7)
    kept = torch.randperm(3)[:2]
    torch.manual_seed(7)
    losses = _criterion(masks_per_image=2)(outputs, anchors, [_object()])
    expected = 6.125 * (per_instance[kept].sum() * 3 / 2) / 16 / 3
    assert losses["loss_mask"].item() == pytest.approx(expected.item(), rel=1e-6)
    full = _criterion()(outputs, anchors, [_object()])
    assert full["loss_mask"].item() == pytest.approx(
        (6.125 * per_instance.sum() / 16 / 3).item(), rel=1e-6)


def test_gradients_reach_every_input():
    torch.manual_seed(0)
    outputs = _outputs(2)
    outputs = outputs._replace(coefficients=torch.rand(2, len(ANCHORS), 2) * 2 - 1,
                               prototypes=torch.rand(2, 2, 4, 4))
    outputs = YOLACTOutputs(*(t.clone().requires_grad_() for t in outputs))
    head = MeanIoUHead()
    targets = [_object(), Instances.cat([_object(box=(20, 0, 40, 20), cls=0),
                                         _object(crowd=True, box=(20, 20, 40, 40))])]
    losses = _criterion()(outputs, ANCHORS, targets, head)
    sum(losses.values()).backward()
    for name, tensor in zip(YOLACTOutputs._fields, outputs):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name
        assert torch.isfinite(tensor.grad).all(), name
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
