"""The golden comparison (``golden_tolerances.py``) on hand-made detections: what rounding does
between CPUs passes, what a real change does fails."""
import numpy as np

import golden_tolerances as gt

TOL = gt.Tolerances(box_px=1e-2, score=1e-4, mask_iou=0.9, mean_mask_iou=0.99,
                    loss_rtol=1e-4, grad_rtol=1e-2, grad_atol=1e-6)


def _det(x, score, cls=0, mask=None):
    d = {"box": [x, 10.0, x + 20.0, 30.0], "score": score, "class": cls}
    if mask is not None:
        d["mask"] = mask
    return d


def _problems(ours, theirs):
    return gt.detection_problems(gt.detection_deviations(ours, theirs, TOL), TOL)


def _expected():
    return [_det(0.0, 0.9), _det(50.0, 0.50002), _det(100.0, 0.5), _det(150.0, 0.3, cls=1)]


def test_rounding_noise_and_near_tied_scores_in_either_order_pass():
    ours = _expected()
    ours[1], ours[2] = _det(100.0 + 1e-3, 0.50001), _det(50.0, 0.49999 + 3e-5)  # swapped
    assert _problems(ours, _expected()) == []


def test_half_a_pixel_fails():
    ours = _expected()
    ours[0] = _det(0.5, 0.9)
    assert any("box_px" in p for p in _problems(ours, _expected()))


def test_a_score_beyond_the_window_fails():
    ours = _expected()
    ours[3] = _det(150.0, 0.301, cls=1)
    assert any("score" in p for p in _problems(ours, _expected()))


def test_another_class_has_no_partner():
    ours = _expected()
    ours[0] = _det(0.0, 0.9, cls=2)
    assert any("without a partner" in p for p in _problems(ours, _expected()))


def test_only_the_weakest_detection_may_be_missing():
    expected = _expected()
    assert _problems(expected[:3], expected) == []  # the 0.3 one: the cut-off, by rounding
    assert any("without a partner" in p for p in _problems(expected[1:], expected))


def test_an_nms_tie_kept_the_other_way_passes_once():
    expected = _expected()
    ours = list(expected)
    ours[1] = _det(53.0, 0.50003)  # the overlapping twin candidate, score tied within 1e-4
    deviation = gt.detection_deviations(ours, expected, TOL)
    assert deviation["nms_ties"] == 1 and gt.detection_problems(deviation, TOL) == []
    ours[1] = _det(53.0, 0.5003)  # not a tie: the score differs
    assert _problems(ours, expected)


def test_masks_compared_by_iou():
    mask = np.zeros((40, 200), bool)
    mask[10:30, 0:20] = True
    shifted = np.roll(mask, 4, axis=1)  # IoU 16 / 24
    expected = [_det(0.0, 0.9, mask=mask)]
    assert _problems([_det(0.0, 0.9, mask=mask.copy())], expected) == []
    assert any("mask_iou" in p for p in _problems([_det(0.0, 0.9, mask=shifted)], expected))


def test_losses_and_gradients():
    assert gt.loss_problems({"a": 1.00005}, {"a": 1.0}, TOL) == []
    assert gt.loss_problems({"a": 1.01}, {"a": 1.0}, TOL)
    assert gt.loss_problems({"a": 1.0}, {"a": 1.0, "b": 2.0}, TOL)
    assert gt.gradient_problems({"w": 2.01, "b": 5e-7}, {"w": 2.0, "b": 1e-8}, TOL) == []
    assert gt.gradient_problems({"w": 2.05, "b": 1e-8}, {"w": 2.0, "b": 1e-8}, TOL)
    assert gt.gradient_problems({"w": 2.0}, {"w": 2.0, "b": 1e-8}, TOL)  # a gradient gone
