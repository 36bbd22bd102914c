"""FCOS post-processing on hand-made head outputs: one level of stride 8, a 4x4 map (cells at
4, 12, 20, 28), two classes, one image."""
import math

import pytest
import torch

from detectron2.structures import Boxes
from rtinst.modeling.fcos import FCOSPostprocessor, compute_locations

STRIDE = 8
NEGATIVE = -20.0  # logit of an (almost) zero probability


def _logit(p):
    return math.log(p / (1 - p))


def _head_outputs(class_probs, distances=1.0, ctr_prob=0.99):
    """class_probs: {(row, col, class): probability}; every other logit is NEGATIVE; every cell
    regresses ``distances`` (strides) to each side and has center-ness ``ctr_prob``."""
    logits = torch.full((1, 2, 4, 4), NEGATIVE)
    for (row, col, cls), prob in class_probs.items():
        logits[0, cls, row, col] = _logit(prob)
    bbox_reg = torch.full((1, 4, 4, 4), distances)
    ctrness = torch.full((1, 1, 4, 4), _logit(ctr_prob))
    return [logits], [bbox_reg], [ctrness], [compute_locations(4, 4, STRIDE)]


def _postprocess(outputs, image_size=(32, 32), **overrides):
    options = dict(strides=[STRIDE], score_threshold=0.05, pre_nms_topk=1000, nms_threshold=0.6,
                   post_nms_topk=100, thresh_with_ctr=False, norm_reg_targets=True)
    options.update(overrides)
    return FCOSPostprocessor(**options)(*outputs, [image_size])[0]


def test_output_fields_scores_and_decoded_boxes():
    # cell (row 1, col 2) = point (20, 12), class 1 with p = 0.8, ctr = 0.5; distances 1 stride
    result = _postprocess(_head_outputs({(1, 2, 1): 0.8}, ctr_prob=0.5))
    assert len(result) == 1
    assert set(result.get_fields()) == {
        "pred_boxes", "scores", "pred_classes", "locations", "fpn_levels", "location_inds"
    }
    assert isinstance(result.pred_boxes, Boxes)
    assert result.pred_boxes.tensor.tolist() == [[12, 4, 28, 20]]
    assert result.scores.item() == pytest.approx(math.sqrt(0.8 * 0.5))
    assert result.pred_classes.tolist() == [1]
    assert result.locations.tolist() == [[20, 12]]
    assert result.fpn_levels.tolist() == [0]
    assert result.image_size == (32, 32)


def test_unnormalised_distances_are_pixels():
    result = _postprocess(_head_outputs({(1, 2, 1): 0.8}, distances=3.0), norm_reg_targets=False)
    assert result.pred_boxes.tensor.tolist() == [[17, 9, 23, 15]]


def test_boxes_leave_unclipped_unless_clipped_before_nms():
    # point (28, 28) +- 2 strides = (12, 12, 44, 44); the 30 x 26 (h x w) image clips it to
    # (12, 12, 26, 30) only with clip_before_nms (else detector_postprocess does, at the end)
    outputs = _head_outputs({(3, 3, 0): 0.9}, distances=2.0)
    assert _postprocess(outputs, image_size=(30, 26)).pred_boxes.tensor.tolist() == [
        [12, 12, 44, 44]]
    clipped = _postprocess(outputs, image_size=(30, 26), clip_before_nms=True)
    assert clipped.pred_boxes.tensor.tolist() == [[12, 12, 26, 30]]


def test_threshold_on_class_probability_or_on_combined_score():
    # cls 0.64, ctr 0.25: the combined score sqrt(0.16) = 0.4
    outputs = _head_outputs({(0, 0, 0): 0.64, (2, 2, 0): 0.3}, ctr_prob=0.25)
    kept = _postprocess(outputs, score_threshold=0.5)
    assert kept.locations.tolist() == [[4, 4]]
    assert kept.scores.item() == pytest.approx(0.4)
    # thresh_with_ctr: the threshold applies to cls x ctr = 0.16 (AdelaiDet), the score
    # reported is still its square root
    assert len(_postprocess(outputs, score_threshold=0.35, thresh_with_ctr=True)) == 0
    kept = _postprocess(outputs, score_threshold=0.15, thresh_with_ctr=True)
    assert kept.locations.tolist() == [[4, 4]]
    assert kept.scores.item() == pytest.approx(0.4)


def test_pre_and_post_nms_top_k_keep_the_best_scores():
    probs = {(0, 0, 0): 0.5, (0, 3, 0): 0.6, (3, 0, 1): 0.7, (3, 3, 1): 0.8, (1, 1, 0): 0.9}
    outputs = _head_outputs(probs, distances=0.5)  # small disjoint boxes: NMS removes nothing
    assert len(_postprocess(outputs)) == 5
    top2 = _postprocess(outputs, pre_nms_topk=2)
    assert top2.locations.tolist() == [[12, 12], [28, 28]]
    assert len(_postprocess(outputs, post_nms_topk=3)) == 3
    best = _postprocess(outputs, post_nms_topk=1)
    assert best.scores.item() == pytest.approx(math.sqrt(0.9 * 0.99))


def test_nms_suppresses_overlapping_boxes_of_one_class_only():
    # cells (1, 1) and (1, 2) with 2-stride distances: boxes (-4, -4, 28, 28), (4, -4, 36, 28),
    # IoU = 768 / 1280 = 0.6; clipped to the 32 x 32 image first, (0, 0, 28, 28) and
    # (4, 0, 32, 28) overlap by 672 / 896 = 0.75
    outputs = _head_outputs({(1, 1, 0): 0.9, (1, 2, 0): 0.8}, distances=2.0)
    assert _postprocess(outputs).locations.tolist() == [[12, 12]]
    assert len(_postprocess(outputs, nms_threshold=0.65)) == 2
    same_class = _postprocess(outputs, nms_threshold=0.65, clip_before_nms=True)
    assert same_class.locations.tolist() == [[12, 12]]
    assert len(_postprocess(outputs, nms_threshold=0.8, clip_before_nms=True)) == 2
    # the same cell predicting both classes: identical boxes, both kept (class-aware NMS)
    two_classes = _postprocess(_head_outputs({(1, 1, 0): 0.9, (1, 1, 1): 0.8}, distances=2.0))
    assert sorted(two_classes.pred_classes.tolist()) == [0, 1]


def test_location_inds_index_the_level_map():
    result = _postprocess(_head_outputs({(1, 2, 1): 0.8, (3, 0, 0): 0.9}))
    assert len(result) == 2
    for (x, y), index in zip(result.locations.tolist(), result.location_inds.tolist()):
        row, col = int(y) // STRIDE, int(x) // STRIDE
        assert index == row * 4 + col  # the 4 x 4 map, row-major


def test_no_candidates_gives_empty_instances():
    result = _postprocess(_head_outputs({}))
    assert len(result) == 0 and result.pred_boxes.tensor.shape == (0, 4)


def test_a_box_clipped_to_nothing_is_dropped_before_the_top_k_only_if_clipped_before_nms():
    # in a 16 x 16 image, the cell at point (28, 28) lies in the padding: with distances of one
    # stride its box (20, 20, 36, 36) clips to nothing. It has the best score: the references
    # keep it as the one detection (detector_postprocess then drops it: no detection left);
    # clipped before the NMS, the one detection kept is the real box of point (4, 4)
    outputs = _head_outputs({(3, 3, 0): 0.9, (0, 0, 1): 0.6})
    reference = _postprocess(outputs, image_size=(16, 16), post_nms_topk=1)
    assert reference.locations.tolist() == [[28, 28]]
    result = _postprocess(outputs, image_size=(16, 16), post_nms_topk=1, clip_before_nms=True)
    assert result.locations.tolist() == [[4, 4]]
    assert result.pred_boxes.tensor.tolist() == [[0, 0, 12, 12]]


def test_post_nms_top_k_keeps_the_detections_tied_with_the_k_th_unless_told_not_to():
    probs = {(0, 0, 0): 0.9, (0, 3, 0): 0.7, (3, 0, 1): 0.7, (3, 3, 1): 0.5}
    outputs = _head_outputs(probs, distances=0.5)
    tied = _postprocess(outputs, post_nms_topk=2)
    assert sorted(tied.locations.tolist()) == [[4, 4], [4, 28], [28, 4]]
    assert len(_postprocess(outputs, post_nms_topk=2, keep_ties=False)) == 2
    assert len(_postprocess(outputs, post_nms_topk=0)) == 4  # <= 0: no limit
