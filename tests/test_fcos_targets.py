"""FCOS target assignment on a 64x64 image with levels of stride 8 (8x8 cells at 4, 12, ..., 60)
and 16 (4x4 cells at 8, 24, 40, 56), size limit 32 between them: level 0 takes
0 < max(l,t,r,b) <= 32, level 1 takes max > 32. Every expected number is worked out by hand."""
import math

import pytest
import torch

from detectron2.structures import Boxes, Instances
from rtinst.modeling.fcos import FCOSTargetAssigner, centerness_targets, compute_locations

NUM_CLASSES = 5
STRIDES = (8, 16)
LEVEL1_OFFSET = 64  # level-0 locations come first


def _locations():
    return [compute_locations(64 // s, 64 // s, s) for s in STRIDES]


def _gt(boxes, classes):
    return Instances(
        (64, 64),
        gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        gt_classes=torch.tensor(classes, dtype=torch.long),
    )


def _assign(gt_per_image, center_sample=False, pos_radius=1.5, norm_reg_targets=False):
    assigner = FCOSTargetAssigner(
        NUM_CLASSES, STRIDES, sizes_of_interest=[32], center_sample=center_sample,
        pos_radius=pos_radius, norm_reg_targets=norm_reg_targets,
    )
    return assigner(_locations(), gt_per_image)


def _index(x, y, level=0):
    stride = STRIDES[level]
    width = 64 // stride
    offset = 0 if level == 0 else LEVEL1_OFFSET
    return offset + ((y - stride // 2) // stride) * width + (x - stride // 2) // stride


def _positive_indices(targets, image=0):
    return set(torch.nonzero(targets["labels"][image] != NUM_CLASSES).flatten().tolist())


def test_locations_are_cell_centres_row_major():
    expected = [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert compute_locations(2, 3, 8).tolist() == expected


def test_centerness_formula():
    # l, t, r, b = 2, 2, 18, 14: sqrt(2/18 * 2/14)
    value = centerness_targets(torch.tensor([[2.0, 2.0, 18.0, 14.0]]))
    assert value.item() == pytest.approx(math.sqrt(2 / 18 * 2 / 14))


def test_box_interior_locations_are_positives_with_exact_targets():
    # box (10, 10, 30, 26): level-0 cells strictly inside are x in {12, 20, 28}, y in {12, 20};
    # their max distance <= 20 (level 0). The one level-1 cell inside, (24, 24), has max distance
    # 14 <= 32, so it is not a level-1 positive.
    targets = _assign([_gt([[10, 10, 30, 26]], [2])])
    expected = {_index(x, y) for x in (12, 20, 28) for y in (12, 20)}
    assert _positive_indices(targets) == expected
    assert (targets["labels"][0, sorted(expected)] == 2).all()
    assert (targets["gt_inds"][0, sorted(expected)] == 0).all()

    centre, corner = _index(20, 20), _index(12, 12)
    assert targets["reg_targets"][0, centre].tolist() == [10, 10, 10, 6]
    assert targets["reg_targets"][0, corner].tolist() == [2, 2, 18, 14]
    assert targets["ctrness_targets"][0, centre].item() == pytest.approx(math.sqrt(6 / 10))
    assert targets["ctrness_targets"][0, corner].item() == pytest.approx(math.sqrt(2 / 18 * 2 / 14))

    negatives = targets["labels"][0] == NUM_CLASSES
    assert (targets["ctrness_targets"][0, negatives] == 0).all()
    assert (targets["gt_inds"][0, negatives] == -1).all()
    assert targets["fpn_levels"].tolist() == [0] * 64 + [1] * 16


def test_normalised_regression_targets_are_in_strides():
    targets = _assign([_gt([[10, 10, 30, 26]], [2])], norm_reg_targets=True)
    assert targets["reg_targets"][0, _index(20, 20)].tolist() == [10 / 8, 10 / 8, 10 / 8, 6 / 8]


def test_center_sampling_shrinks_positives_to_the_radius():
    # centre (20, 18); radius 1.0 * 8 gives the square [12, 28] x [10, 26], so strictly inside:
    # x = 20, y in {12, 20}.
    gt = [_gt([[10, 10, 30, 26]], [2])]
    targets = _assign(gt, center_sample=True, pos_radius=1.0)
    assert _positive_indices(targets) == {_index(20, 12), _index(20, 20)}
    # radius 0.5 -> [16, 24] x [14, 22]: only (20, 20)
    assert _positive_indices(_assign(gt, center_sample=True, pos_radius=0.5)) == {_index(20, 20)}
    # radius 1.5 covers the whole box: same positives as without center sampling
    assert _positive_indices(_assign(gt, center_sample=True, pos_radius=1.5)) == _positive_indices(
        _assign(gt)
    )


def test_large_box_goes_to_the_coarse_level():
    # the whole image: every level-0 cell has max(x, 64 - x, y, 64 - y) >= 36 > 32; every level-1
    # cell has max >= 40: all 16 level-1 cells are positives, no level-0 cell.
    targets = _assign([_gt([[0, 0, 64, 64]], [1])])
    assert _positive_indices(targets) == set(range(LEVEL1_OFFSET, LEVEL1_OFFSET + 16))
    assert targets["reg_targets"][0, _index(8, 8, level=1)].tolist() == [8, 8, 56, 56]


def test_size_limit_is_inclusive_on_the_finer_level():
    # box (0, 0, 36, 8) and cell (4, 4): l, t, r, b = 4, 4, 32, 4 -> max exactly 32 -> level 0.
    targets = _assign([_gt([[0, 0, 36, 8]], [0])])
    assert _positive_indices(targets) == {_index(x, 4) for x in (4, 12, 20, 28)}
    # box (0, 0, 40, 16) and level-1 cell (8, 8): 8, 8, 32, 8 -> max 32 is not > 32.
    targets = _assign([_gt([[0, 0, 40, 16]], [0])])
    assert _index(8, 8, level=1) not in _positive_indices(targets)


def test_overlapping_boxes_smallest_area_wins():
    big, small = [0, 0, 40, 40], [10, 10, 30, 26]
    targets = _assign([_gt([big, small], [3, 2])])
    # (20, 20) lies in both and is a level-0 candidate for both (max 20 and 10): the small box
    assert targets["gt_inds"][0, _index(20, 20)].item() == 1
    assert targets["labels"][0, _index(20, 20)].item() == 2
    # (28, 28) lies in the big box only (y = 28 > 26): l, t, r, b = 28, 28, 12, 12
    assert targets["gt_inds"][0, _index(28, 28)].item() == 0
    assert targets["labels"][0, _index(28, 28)].item() == 3
    assert targets["reg_targets"][0, _index(28, 28)].tolist() == [28, 28, 12, 12]


def test_image_without_boxes_is_all_background():
    targets = _assign([_gt([], [])])
    assert (targets["labels"] == NUM_CLASSES).all()
    assert (targets["gt_inds"] == -1).all()
    assert (targets["ctrness_targets"] == 0).all()
    assert targets["reg_targets"].shape == (1, 80, 4)


@pytest.mark.parametrize("center_sample", [False, True])
def test_degenerate_boxes_match_nothing_and_give_no_nan(center_sample):
    zero_width, zero_height = [20, 10, 20, 40], [8, 20, 50, 20]
    targets = _assign([_gt([zero_width, zero_height], [0, 1])], center_sample=center_sample)
    assert (targets["labels"] == NUM_CLASSES).all()
    for value in targets.values():
        assert torch.isfinite(value.float()).all()
    # next to a normal box, the normal box keeps its positives
    targets = _assign([_gt([zero_width, [10, 10, 30, 26]], [0, 2])], center_sample=center_sample)
    assert len(_positive_indices(targets)) > 0
    assert (targets["gt_inds"][0][targets["gt_inds"][0] >= 0] == 1).all()
    assert torch.isfinite(targets["ctrness_targets"]).all()


def test_gt_indices_count_boxes_of_previous_images():
    targets = _assign([_gt([[0, 0, 64, 64], [10, 10, 30, 26]], [1, 2]), _gt([], []),
                       _gt([[10, 10, 30, 26]], [4])])
    assert set(targets["gt_inds"][0].unique().tolist()) == {-1, 0, 1}
    assert (targets["gt_inds"][1] == -1).all()
    assert set(targets["gt_inds"][2].unique().tolist()) == {-1, 2}
    assert (targets["labels"][2][targets["gt_inds"][2] == 2] == 4).all()


def test_wrong_number_of_size_limits_is_rejected():
    with pytest.raises(ValueError, match="SIZES_OF_INTEREST"):
        FCOSTargetAssigner(NUM_CLASSES, STRIDES, [32, 64], False, 1.5, False)
