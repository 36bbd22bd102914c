"""CenterMask's scale-adaptive RoI assignment (Lee & Park, CVPR 2020, Sec. 2.3).

Eq. 2 assigns an RoI to the pyramid level

    k = ceil(k_max - log2(A_input / A_RoI)),   clamped to [k_min, k_max]

from the ratio of the input image's area to the RoI's, instead of FPN's Eq. 1
(k = floor(k0 + log2(sqrt(wh) / 224)), canonical size 224 at k0 = 4), which ignores the input
size. The paper's choice is [k_min, k_max] = [P3, P5] (Table 2).
"""
from typing import List, Sequence, Tuple

import torch

from detectron2.layers import cat, nonzero_tuple
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.structures import Boxes

__all__ = ["ASSIGN_CRITERIA", "assign_boxes_to_levels_by_ratio", "ScaleAdaptiveROIPooler"]

# "ratio": Eq. 2 (CenterMask); "area": Eq. 1 (FPN, Detectron2's default assignment)
ASSIGN_CRITERIA = ("ratio", "area")


def assign_boxes_to_levels_by_ratio(
    box_lists: List[Boxes], image_sizes: Sequence[Tuple[int, int]], min_level: int, max_level: int
) -> torch.Tensor:
    """Eq. 2 for the boxes of every image (``image_sizes[i]`` = (height, width) of image i).

    Returns:
        (M,) int64 level of each box (concatenated over images) minus ``min_level``.
    """
    box_areas = cat([boxes.area() for boxes in box_lists])
    # (sizes may be tensors: a traced ONNX graph's image size)
    image_areas = cat([boxes.tensor.new_ones(boxes.tensor.shape[0]) * (height * width)
                       for boxes, (height, width) in zip(box_lists, image_sizes)])
    # a degenerate (zero-area) box is as small as a box can be: the finest level
    ratios = image_areas / box_areas.clamp(min=torch.finfo(box_areas.dtype).tiny)
    levels = torch.ceil(max_level - torch.log2(ratios))
    return levels.clamp(min=min_level, max=max_level).to(torch.int64) - min_level


class ScaleAdaptiveROIPooler(ROIPooler):
    """Detectron2's multi-level ``ROIPooler`` whose level assignment is Eq. 2 ("ratio") or
    Eq. 1 ("area", Detectron2's own)."""

    def __init__(self, *args, assign_criterion: str = "ratio", **kwargs):
        """
        Args:
            args, kwargs: ``ROIPooler``'s (output_size, scales, sampling_ratio, pooler_type, ...).
            assign_criterion: "ratio" (Eq. 2) or "area" (Eq. 1).
        """
        super().__init__(*args, **kwargs)
        if assign_criterion not in ASSIGN_CRITERIA:
            raise ValueError(f"MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION must be one of "
                             f"{ASSIGN_CRITERIA}, got {assign_criterion!r}")
        self.assign_criterion = assign_criterion

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes],
                image_sizes: Sequence[Tuple[int, int]] = ()):
        """
        Args:
            x: one NCHW map per level, fine to coarse; box_lists: N ``Boxes``.
            image_sizes: N (height, width) input sizes (before padding), needed by Eq. 2.

        Returns:
            (M, C, output_size, output_size) features of the M boxes.
        """
        if self.assign_criterion == "area" or len(self.level_poolers) == 1:
            return super().forward(x, box_lists)
        if len(image_sizes) != len(box_lists):
            raise ValueError("Eq. 2 needs the size of every image: got "
                             f"{len(image_sizes)} sizes for {len(box_lists)} images")
        boxes = convert_boxes_to_pooler_format(box_lists)
        levels = assign_boxes_to_levels_by_ratio(
            box_lists, image_sizes, self.min_level, self.max_level
        )
        # per level, then back into the boxes' order (no assignment into a preallocated
        # tensor: a traced ONNX graph keeps the tracing example's value shapes)
        at_levels = [nonzero_tuple(levels == level)[0] for level in range(len(x))]
        pooled = cat([pooler(x[level], boxes[inds])
                      for level, (pooler, inds) in enumerate(zip(self.level_poolers, at_levels))])
        return pooled[torch.argsort(cat(at_levels))]
