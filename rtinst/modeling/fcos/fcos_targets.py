"""FCOS training targets: which feature-map locations are positives, for which box (Sec. 3.1-3.3).

Every location (x, y) of a level with stride s is the image point (s//2 + j*s, s//2 + i*s).
It is a positive candidate for a ground-truth box when
  * it lies strictly inside the box (Sec. 3.1) -- with center sampling, strictly inside the box
    intersected with the square of half-size ``pos_radius * s`` around the box centre;
  * its regression distances (l*, t*, r*, b*) to the box sides satisfy
    m_{i-1} < max(l*, t*, r*, b*) <= m_i for its level i (Sec. 3.2), with
    m = (0, *sizes_of_interest, inf). The paper's wording keeps both ends inclusive; the half-open
    interval makes each (location, box) pair fall into exactly one level.
Among several candidate boxes the one with the minimal area is chosen (Sec. 3.2).
Zero-width or zero-height boxes contain no location strictly, so they are never matched.
"""
import math
from typing import Dict, List, Sequence

import torch

from detectron2.structures import Instances

__all__ = ["compute_locations", "centerness_targets", "FCOSTargetAssigner"]


def compute_locations(height: int, width: int, stride: int, device=None) -> torch.Tensor:
    """(height * width, 2) image points (x, y) of a feature map's cells, row-major (Sec. 3.1)."""
    shifts_x = torch.arange(width, dtype=torch.float32, device=device) * stride + stride // 2
    shifts_y = torch.arange(height, dtype=torch.float32, device=device) * stride + stride // 2
    y, x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    return torch.stack((x.reshape(-1), y.reshape(-1)), dim=1)


def centerness_targets(ltrb: torch.Tensor) -> torch.Tensor:
    """Eq. 3: sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)) of (..., 4) distances > 0."""
    left_right, top_bottom = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio = (left_right.min(dim=-1).values / left_right.max(dim=-1).values) * (
        top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values
    )
    return torch.sqrt(ratio)


class FCOSTargetAssigner:
    """Assigns a class, box distances, a centerness target and a ground-truth index to every
    location of every image (see the module docstring for the rule)."""

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int],
        sizes_of_interest: Sequence[float],
        center_sample: bool,
        pos_radius: float,
        norm_reg_targets: bool,
    ):
        """
        Args:
            num_classes: number of foreground classes; label ``num_classes`` is background.
            strides: stride of each level.
            sizes_of_interest: the len(strides) - 1 size limits m_1 .. m_{L-1} between levels.
            center_sample: restrict positives to ``pos_radius`` strides around box centres.
            norm_reg_targets: divide the (l*, t*, r*, b*) targets by the level's stride.
        """
        if len(sizes_of_interest) != len(strides) - 1:
            raise ValueError(
                f"{len(strides)} levels need {len(strides) - 1} SIZES_OF_INTEREST limits, "
                f"got {list(sizes_of_interest)}"
            )
        self.num_classes = num_classes
        self.strides = list(strides)
        limits = [0.0, *sizes_of_interest, math.inf]
        self.size_ranges = list(zip(limits[:-1], limits[1:]))
        self.center_sample = center_sample
        self.pos_radius = pos_radius
        self.norm_reg_targets = norm_reg_targets

    def __call__(
        self, locations: List[torch.Tensor], gt_instances: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            locations: per level, the (H_i * W_i, 2) output of :func:`compute_locations`.
            gt_instances: per image, ``gt_boxes`` (XYXY) and ``gt_classes``.

        Returns:
            dict of tensors over the L = sum_i H_i * W_i locations (levels concatenated):
              "labels" (N, L) int64, ``num_classes`` for background;
              "reg_targets" (N, L, 4) float (l*, t*, r*, b*) of the matched box (in strides when
                  ``norm_reg_targets``); meaningful at positives only;
              "ctrness_targets" (N, L) float, Eq. 3 at positives, 0 elsewhere;
              "gt_inds" (N, L) int64, index of the matched box in the concatenation of all
                  images' boxes (image order), -1 for background;
              "fpn_levels" (L,) int64, level of each location.
        """
        fpn_levels = torch.cat(
            [torch.full((len(loc),), level, dtype=torch.long, device=loc.device)
             for level, loc in enumerate(locations)]
        )
        all_locations = torch.cat(locations)
        strides = all_locations.new_tensor(self.strides)[fpn_levels]
        size_ranges = all_locations.new_tensor(self.size_ranges)[fpn_levels]

        per_image, gt_offset = [], 0
        for instances in gt_instances:
            targets = self._assign_single_image(
                all_locations, strides, size_ranges,
                instances.gt_boxes.tensor.to(all_locations), instances.gt_classes,
            )
            targets["gt_inds"] = torch.where(
                targets["gt_inds"] >= 0, targets["gt_inds"] + gt_offset, targets["gt_inds"]
            )
            gt_offset += len(instances)
            per_image.append(targets)
        targets = {key: torch.stack([t[key] for t in per_image]) for key in per_image[0]}
        targets["fpn_levels"] = fpn_levels
        return targets

    def _assign_single_image(self, locations, strides, size_ranges, boxes, classes):
        num_locations = len(locations)
        if len(boxes) == 0:
            return {
                "labels": classes.new_full((num_locations,), self.num_classes),
                "reg_targets": locations.new_zeros((num_locations, 4)),
                "ctrness_targets": locations.new_zeros((num_locations,)),
                "gt_inds": classes.new_full((num_locations,), -1),
            }
        ltrb = _distances_to_sides(locations, boxes)  # (L, G, 4)
        if self.center_sample:
            inside = _distances_to_sides(locations, self._center_regions(boxes, strides))
        else:
            inside = ltrb
        is_candidate = inside.min(dim=2).values > 0
        max_distance = ltrb.max(dim=2).values
        is_candidate &= (max_distance > size_ranges[:, :1]) & (max_distance <= size_ranges[:, 1:])

        areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand_as(max_distance)
        areas = torch.where(is_candidate, areas, torch.full_like(areas, math.inf))
        min_area, gt_inds = areas.min(dim=1)
        is_positive = min_area < math.inf

        reg_targets = ltrb[torch.arange(num_locations, device=ltrb.device), gt_inds]
        ctrness = torch.zeros_like(min_area)
        ctrness[is_positive] = centerness_targets(reg_targets[is_positive])
        if self.norm_reg_targets:
            reg_targets = reg_targets / strides[:, None]
        background = classes.new_full((num_locations,), self.num_classes)
        return {
            "labels": torch.where(is_positive, classes[gt_inds], background),
            "reg_targets": reg_targets,
            "ctrness_targets": ctrness,
            "gt_inds": torch.where(is_positive, gt_inds, torch.full_like(gt_inds, -1)),
        }

    def _center_regions(self, boxes, strides):
        """(L, G, 4) boxes ∩ squares of half-size pos_radius * stride around their centres."""
        centers = (boxes[:, :2] + boxes[:, 2:]) / 2  # (G, 2)
        radius = (self.pos_radius * strides)[:, None, None]  # (L, 1, 1)
        low = torch.maximum(centers[None] - radius, boxes[None, :, :2])
        high = torch.minimum(centers[None] + radius, boxes[None, :, 2:])
        return torch.cat((low, high), dim=2)


def _distances_to_sides(locations, boxes):
    """(L, G, 4) distances (l, t, r, b) from L locations to (G, 4) or (L, G, 4) boxes."""
    x, y = locations[:, 0, None], locations[:, 1, None]
    return torch.stack(
        (x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y), dim=2
    )
