"""YOLACT's anchors (Sec. 6, "Anchors"; the reference's ``make_priors``): on each level, at every
location in row-major order, for every scale, for every aspect ratio, a box centred on the
location's cell whose side is given in pixels at the reference input size.

With scale s and aspect ratio a (width / height) an anchor is s * sqrt(a) wide and s / sqrt(a)
tall at ``max_size`` (550); on an input of another size the widths scale with its width and the
heights with its height, as the reference's input-relative boxes do. ``square`` reproduces the
reference base models' every-anchor-square behaviour (height set to the width), which makes the
three aspect ratios of YOLACT's base model three copies of one square anchor.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

__all__ = ["YOLACTAnchors"]


class YOLACTAnchors(nn.Module):
    """Anchors (A, 4) XYXY in input pixels for a list of feature-map sizes, cached per size."""

    def __init__(self, scales: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]],
                 max_size: int, square: bool):
        """
        Args:
            scales: per level, the anchor sizes in pixels at ``max_size``.
            aspect_ratios: per level (or one list for all levels), the width / height ratios.
            max_size: the input side the scales refer to (the reference's ``max_size``).
            square: every anchor as tall as it is wide (the reference's ``use_square_anchors``).
        """
        super().__init__()
        if len(aspect_ratios) == 1:
            aspect_ratios = list(aspect_ratios) * len(scales)
        if len(aspect_ratios) != len(scales):
            raise ValueError(f"MODEL.YOLACT.ANCHOR_ASPECT_RATIOS has {len(aspect_ratios)} levels "
                             f"but ANCHOR_SCALES has {len(scales)}")
        self.scales = [list(map(float, s)) for s in scales]
        self.aspect_ratios = [list(map(float, a)) for a in aspect_ratios]
        self.max_size = max_size
        self.square = square
        self._cache: Dict[Tuple, torch.Tensor] = {}

    @property
    def num_levels(self) -> int:
        return len(self.scales)

    def num_anchors_per_location(self) -> List[int]:
        return [len(s) * len(a) for s, a in zip(self.scales, self.aspect_ratios)]

    def level_anchors(self, level: int, height: int, width: int, input_height: int,
                      input_width: int) -> torch.Tensor:
        """(height * width * S * R, 4) anchors of one level, in the reference's order."""
        sizes = []
        for scale in self.scales[level]:
            for ratio in self.aspect_ratios[level]:
                w = scale * math.sqrt(ratio) / self.max_size
                h = w if self.square else scale / math.sqrt(ratio) / self.max_size
                sizes.append((w * input_width, h * input_height))
        sizes = torch.tensor(sizes, dtype=torch.float64)  # (S * R, 2)
        ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height * input_height
        xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width * input_width
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 1, 2)
        half = sizes[None] / 2
        boxes = torch.cat([centres - half, centres + half], dim=-1)  # (H * W, S * R, 4)
        return boxes.reshape(-1, 4).float()

    def forward(self, feature_sizes: Sequence[Tuple[int, int]], input_size: Tuple[int, int],
                device=None) -> torch.Tensor:
        """All levels' anchors concatenated, (A, 4) XYXY in pixels of a ``input_size`` (h, w)
        input whose level l has ``feature_sizes[l]`` (h, w)."""
        if len(feature_sizes) != self.num_levels:
            raise ValueError(f"{len(feature_sizes)} feature levels for anchors defined on "
                             f"{self.num_levels} (MODEL.YOLACT.ANCHOR_SCALES)")
        key = (tuple(map(tuple, feature_sizes)), tuple(input_size), device)
        if key not in self._cache:
            self._cache[key] = torch.cat([
                self.level_anchors(level, h, w, *input_size)
                for level, (h, w) in enumerate(feature_sizes)
            ]).to(device)
        return self._cache[key]
