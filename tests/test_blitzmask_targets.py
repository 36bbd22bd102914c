"""BlitzMask targets (Sec. 2.1-2.2): Gaussian peak at the mask's centre of mass, size targets."""
import math

import torch

from blitzmask.targets import (
    box_regions,
    build_targets,
    centre_of_mass,
    gaussian_maps,
    size_targets,
    size_weights,
)
from detectron2.structures import BitMasks, Boxes, Instances


def _instances(masks, boxes, classes, size):
    return Instances(size, gt_masks=BitMasks(torch.stack(masks)),
                     gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                     gt_classes=torch.tensor(classes))


def test_centre_of_mass_of_an_l_shape():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[0:4, 0] = True  # 4 pixels, centres (0.5, 0.5..3.5)
    mask[3, 1:4] = True  # 3 pixels, centres (1.5..3.5, 3.5)
    x = (4 * 0.5 + 1.5 + 2.5 + 3.5) / 7
    y = (0.5 + 1.5 + 2.5 + 3.5 + 3 * 3.5) / 7
    assert torch.allclose(centre_of_mass(mask[None]), torch.tensor([[x, y]]))


def test_heatmap_peaks_at_the_centre_of_mass_not_the_box_centre():
    # an L-shaped object in a 32 x 32 box: box centre (16, 16), centre of mass near (8.9, 23.1)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, :8] = True
    mask[24:, :] = True
    targets = build_targets(_instances([mask], [[0, 0, 32, 32]], [1], (32, 32)), num_classes=2,
                            height=8, width=8, stride=4, alpha=0.54, size_region="gaussian")
    com = centre_of_mass(mask[None])[0]
    peak = (com / 4).floor().long()
    assert targets.peaks.tolist() == [peak.tolist()]
    heatmap = targets.heatmap
    assert heatmap[0].abs().max() == 0  # other class untouched
    assert heatmap[1, peak[1], peak[0]] == 1.0
    assert (heatmap[1] == 1).sum() == 1
    assert heatmap[1].argmax().item() == peak[1].item() * 8 + peak[0].item()
    assert heatmap[1, 4, 4] < 1  # the box centre's cell is not the peak


def test_gaussian_spread_follows_the_box_size():
    # box 12 x 6 cells, alpha 0.5: sigma_x = 1, sigma_y = 0.5
    g = gaussian_maps(torch.tensor([[5, 4]]), torch.tensor([[12.0, 6.0]]), 9, 11, alpha=0.5)[0]
    assert g[4, 5] == 1.0
    assert torch.isclose(g[4, 6], torch.tensor(math.exp(-0.5)))  # one sigma_x away
    assert torch.isclose(g[4, 7], torch.tensor(math.exp(-2.0)))
    assert torch.isclose(g[5, 5], torch.tensor(math.exp(-2.0)))  # one cell = two sigma_y
    assert torch.isclose(g[5, 6], torch.tensor(math.exp(-2.5)))


def test_overlapping_objects_of_one_class_merge_by_maximum():
    a = torch.zeros(16, 16, dtype=torch.bool)
    a[0:8, 0:8] = True
    b = torch.zeros(16, 16, dtype=torch.bool)
    b[4:12, 4:12] = True
    t = build_targets(_instances([a, b], [[0, 0, 8, 8], [4, 4, 12, 12]], [0, 0], (16, 16)),
                      num_classes=1, height=4, width=4, stride=4, alpha=0.54, size_region="peak")
    ga = gaussian_maps(t.peaks[:1], torch.tensor([[2.0, 2.0]]), 4, 4, 0.54)[0]
    gb = gaussian_maps(t.peaks[1:], torch.tensor([[2.0, 2.0]]), 4, 4, 0.54)[0]
    assert torch.allclose(t.heatmap[0], torch.maximum(ga, gb))
    assert (t.heatmap[0] == 1).sum() == 2


def test_size_targets_are_distances_to_the_box_sides_in_strides():
    # box (6, 2, 30, 14) px, stride 4; cell (x=2, y=1) has centre (10, 6)
    sizes = size_targets(torch.tensor([[6.0, 2.0, 30.0, 14.0]]), 4, 8, stride=4)
    assert torch.allclose(sizes[0, :, 1, 2], torch.tensor([1.0, 1.0, 5.0, 2.0]))
    assert (sizes >= 0).all()  # cells outside the box clamp to 0
    assert sizes[0, 0, 0, 0] == 0  # cell centre (2, 2) lies left of x1 = 6


def test_size_weights_sum_to_one_per_instance_and_peak_mode_is_one_hot():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [16.0, 0.0, 32.0, 8.0]])
    peaks = torch.tensor([[1, 1], [5, 0]])
    g = gaussian_maps(peaks, torch.tensor([[4.0, 4.0], [4.0, 2.0]]), 4, 8, 0.54)
    regions = box_regions(boxes, 4, 8, 4)
    w = size_weights(g, peaks, regions, "gaussian")
    assert torch.allclose(w.sum(dim=(1, 2)), torch.ones(2))
    assert (w[0][~regions[0]] == 0).all() and (w[1][~regions[1]] == 0).all()
    assert (w[0] * w[1]).sum() == 0  # each cell belongs to one instance
    assert w[0, 1, 1] == w[0].max()  # the peak weighs most
    p = size_weights(g, peaks, regions, "peak")
    assert p[0, 1, 1] == 1 and p[1, 0, 5] == 1 and p.sum() == 2


def test_empty_masks_are_left_out_and_soft_masks_average_each_cell():
    half = torch.zeros(8, 8, dtype=torch.bool)
    half[0:2, 0:4] = True  # the top half of cell (0, 0) (cells are 4x4 pixels)
    empty = torch.zeros(8, 8, dtype=torch.bool)
    t = build_targets(_instances([half, empty], [[0, 0, 4, 2], [4, 4, 6, 6]], [0, 0], (8, 8)),
                      num_classes=1, height=2, width=2, stride=4, alpha=0.54,
                      size_region="gaussian")
    assert len(t.classes) == 1
    assert torch.allclose(t.masks[0], torch.tensor([[0.5, 0.0], [0.0, 0.0]]))
    assert t.box_regions[0].tolist() == [[True, False], [False, False]]
