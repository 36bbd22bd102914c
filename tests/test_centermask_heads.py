"""CenterMask's parts on hand-computed cases: Eq. 2's level assignment (with the paper's worked
example), the pooler using it, the spatial attention module, the SAG-Mask head's layer order,
and mask scoring (IoU targets, loss, score recalibration)."""
import math

import pytest
import torch
from tiny_models import tiny_fcos_cfg

from centermask import ScaleAdaptiveROIPooler, SpatialAttention, assign_boxes_to_levels_by_ratio
from centermask.mask_scoring import mask_iou_inference, mask_iou_loss, mask_iou_targets
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.modeling.roi_heads import build_mask_head
from detectron2.structures import BitMasks, Boxes, Instances


def _boxes(*xyxy):
    return Boxes(torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4))


def test_eq2_on_the_papers_example_picks_the_finest_level_where_eq1_picks_p4():
    # Sec. 2.3: 1024x1024 input, 224^2 RoI: Eq. 1 -> P4; Eq. 2 -> ceil(5 - log2(1024^2/224^2))
    # = ceil(0.61) = 1, clamped to the finest level P3
    roi = [_boxes((100, 100, 324, 324))]
    assert assign_boxes_to_levels(roi, 3, 5, 224, 4).tolist() == [1]  # offset from P3: P4
    assert assign_boxes_to_levels_by_ratio(roi, [(1024, 1024)], 3, 5).tolist() == [0]  # P3
    # with k_max = 7 (P3-P7): ceil(7 - 4.39) = 3
    assert assign_boxes_to_levels_by_ratio(roi, [(1024, 1024)], 3, 7).tolist() == [0]


@pytest.mark.parametrize("area, level_p5, level_p7", [
    (6000, 5, 7),  # ratio 1.67 (RoI > half the image): ceil(k_max - 0.74) = k_max
    (5000, 4, 6),  # ratio 2: k_max - 1
    (3000, 4, 6),  # ratio 3.33: ceil(k_max - 1.74)
    (2500, 3, 5),  # ratio 4: k_max - 2
    (100, 3, 3),   # ratio 100: ceil(k_max - 6.64), clamped to P3
    (0, 3, 3),     # degenerate box: the finest level
])
def test_eq2_hand_computed_levels(area, level_p5, level_p7):
    width = area / 50
    roi = [_boxes((0, 0, width, 50))]
    assert assign_boxes_to_levels_by_ratio(roi, [(100, 100)], 3, 5).item() + 3 == level_p5
    assert assign_boxes_to_levels_by_ratio(roi, [(100, 100)], 3, 7).item() + 3 == level_p7


def test_eq2_depends_on_each_images_own_size():
    rois = [_boxes((0, 0, 50, 50)), _boxes((0, 0, 50, 50))]
    # 2500 px in a 100x100 image: ratio 4 -> P3; in a 70x70 image: ratio 1.96 -> ceil(4.03) = P5
    levels = assign_boxes_to_levels_by_ratio(rois, [(100, 100), (70, 70)], 3, 5)
    assert (levels + 3).tolist() == [3, 5]


@pytest.mark.parametrize("criterion, expected", [("ratio", [3.0, 5.0]), ("area", [4.0, 4.0])])
def test_pooler_pools_from_the_assigned_level(criterion, expected):
    # level k is filled with the value k, so a pooled RoI shows where it came from
    features = [torch.full((2, 1, 256 // s, 256 // s), float(k)) for k, s in ((3, 8), (4, 16), (5, 32))]
    pooler = ScaleAdaptiveROIPooler(
        output_size=2, scales=(1 / 8, 1 / 16, 1 / 32), sampling_ratio=1, pooler_type="ROIAlignV2",
        assign_criterion=criterion,
    )
    # 224^2 RoIs: small in a 1024^2 image (Eq. 2: P3), large in a 256^2 one (P5); Eq. 1: P4
    rois = [_boxes((0, 0, 224, 224)), _boxes((0, 0, 224, 224))]
    pooled = pooler(features, rois, [(1024, 1024), (256, 256)])
    assert pooled.shape == (2, 1, 2, 2)
    assert pooled.mean(dim=(1, 2, 3)).tolist() == expected


def test_pooler_rejects_an_unknown_criterion():
    with pytest.raises(ValueError, match="ASSIGN_CRITERION"):
        ScaleAdaptiveROIPooler(output_size=2, scales=(1 / 8,), sampling_ratio=1,
                               pooler_type="ROIAlignV2", assign_criterion="size")


def test_spatial_attention_on_a_hand_computed_tensor():
    sam = SpatialAttention()
    with torch.no_grad():
        sam.conv.weight.zero_()
        sam.conv.weight[0, 0, 1, 1] = 0.5    # centre tap on the channel mean
        sam.conv.weight[0, 1, 1, 1] = -0.25  # centre tap on the channel max
    x = torch.tensor([[[[1.0, 3.0]], [[3.0, 5.0]]]])  # (1, 2, 1, 2): means 2, 4; maxima 3, 5
    attention = torch.sigmoid(torch.tensor([0.5 * 2 - 0.25 * 3, 0.5 * 4 - 0.25 * 5]))
    torch.testing.assert_close(sam.attention(x).flatten(), attention)
    torch.testing.assert_close(sam(x), x * attention.view(1, 1, 1, 2))


def test_sag_mask_head_applies_the_attention_between_the_convs_and_the_deconvolution():
    cfg = tiny_fcos_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_MASK_HEAD.NAME = "SpatialAttentionMaskHead"
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 4
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 16
    head = build_mask_head(cfg, ShapeSpec(channels=8, width=14, height=14)).eval()
    assert [name for name, _ in head.named_children()] == [
        "mask_fcn1", "mask_fcn2", "mask_fcn3", "mask_fcn4", "spatialAtt", "deconv",
        "deconv_relu", "predictor",
    ]
    x = torch.randn(5, 8, 14, 14)
    expected = x
    for k in range(1, 5):
        expected = getattr(head, f"mask_fcn{k}")(expected)
    expected = head.spatialAtt(expected)
    expected = head.predictor(torch.relu(head.deconv(expected)))
    actual = head.layers(x)
    assert actual.shape == (5, 3, 28, 28)
    torch.testing.assert_close(actual, expected)


def _proposal(box, gt_rect=(0, 0, 20, 10), size=32):
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    x0, y0, x1, y1 = gt_rect
    mask[0, y0:y1, x0:x1] = True
    return Instances((size, size), proposal_boxes=_boxes(box), gt_masks=BitMasks(mask),
                     gt_classes=torch.tensor([0]))


def test_mask_iou_targets_count_the_object_outside_the_box():
    full, half = _proposal((0, 0, 20, 10)), _proposal((0, 0, 10, 10))
    everywhere = torch.full((1, 28, 28), 5.0)
    left_half = torch.full((1, 28, 28), -5.0)
    left_half[:, :, :14] = 5.0
    proposals = [full, full, half, full]
    logits = torch.cat([everywhere, -everywhere, everywhere, left_half])
    ious = mask_iou_targets(logits, proposals)
    # exact mask: 1; empty mask: 0; the box holds half the object, predicted whole: 0.5;
    # half of the object predicted inside the full box: 0.5
    torch.testing.assert_close(ious, torch.tensor([1.0, 0.0, 0.5, 0.5]))


def test_mask_iou_loss_is_half_squared_error_over_rois_with_overlap():
    loss = mask_iou_loss(torch.tensor([0.5, 0.9, 0.3]), torch.tensor([1.0, 0.5, 0.0]))
    assert loss.item() == pytest.approx(0.5 * (0.25 + 0.16) / 2)
    assert mask_iou_loss(torch.tensor([0.3]), torch.tensor([0.0])).item() == 0.0


def test_mask_scoring_recalibrates_scores_by_the_predicted_iou_of_the_predicted_class():
    instances = Instances((10, 10), scores=torch.tensor([0.9, 0.6]),
                          pred_classes=torch.tensor([1, 0]))
    pred_iou = torch.tensor([[0.8, 0.3, 0.5], [0.95, 0.1, 0.2]])  # (detections, classes)
    mask_iou_inference(pred_iou, [instances])
    torch.testing.assert_close(instances.mask_scores, torch.tensor([0.9 * 0.3, 0.6 * 0.95]))
    # the better-predicted mask now ranks first although its box score is lower
    assert instances.mask_scores.argmax().item() == 1 and instances.scores.argmax().item() == 0
    assert math.isclose(instances.scores[0].item(), 0.9, rel_tol=1e-6)  # box scores unchanged


def test_mask_scores_take_the_raw_predicted_iou_unless_clamped():
    # centermask2 multiplies by the raw regression output, even outside [0, 1]
    pred_iou = torch.tensor([[1.25, 0.2], [-0.5, 0.1]])
    raw = Instances((10, 10), scores=torch.tensor([0.8, 0.5]), pred_classes=torch.tensor([0, 0]))
    mask_iou_inference(pred_iou, [raw])
    torch.testing.assert_close(raw.mask_scores, torch.tensor([0.8 * 1.25, 0.5 * -0.5]))
    clamped = Instances((10, 10), scores=torch.tensor([0.8, 0.5]),
                        pred_classes=torch.tensor([0, 0]))
    mask_iou_inference(pred_iou, [clamped], clamp_iou=True)
    torch.testing.assert_close(clamped.mask_scores, torch.tensor([0.8, 0.0]))
