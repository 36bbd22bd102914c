"""YolactEdge's partial feature transform (Liu et al., ICRA 2021, Sec. III-B, Fig. 3): on a
non-keyframe the backbone runs only up to C3; the keyframe's top-down FPN sums ("phase 1") of the
coarse levels (P4, P5 by default) are warped to the current frame by the flow and compensated
(``warp_compensated``); P3 is rebuilt from the current frame as upsample(warped P4) +
lateral(C3), keeping the prototypes' high-resolution detail; then the FPN's output convolutions
and everything after run as on a keyframe.

``SPA`` is the reference's optional refinement of the warped levels with the current frame's C3
lateral (``MODEL.YOLACT_EDGE.SPA``).
"""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from rtinst.modeling.layers import warp

from .flow_net import FlowPrediction, flow_to_pixels

__all__ = ["SPA", "warp_compensated"]


def warp_compensated(features: torch.Tensor, prediction: FlowPrediction) -> torch.Tensor:
    """The keyframe's ``features`` warped by the prediction's flow (bilinear, zero outside; the
    flow resized to the features' map as the reference's "area" interpolation when the sizes
    differ), times its scale plus its bias."""
    flow, scale, bias = prediction
    size = features.shape[-2:]
    if flow.shape[-2:] != size:
        flow, scale, bias = (F.interpolate(t, size=size, mode="area")
                             for t in (flow, scale, bias))
    return warp(features, flow_to_pixels(flow)) * scale + bias


class SPA(nn.Module):
    """Each warped level plus a 3x3 conv + LeakyReLU(0.1) of [that level, the current C3 lateral
    resized to it (bilinear)], both L2-normalised over channels when ``normalized``."""

    def __init__(self, channels: int, num_levels: int, normalized: bool = False):
        super().__init__()
        self.normalized = normalized
        self.refine = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1),
                          nn.LeakyReLU(0.1, inplace=True))
            for _ in range(num_levels))
        for block in self.refine:
            nn.init.kaiming_normal_(block[0].weight, 0.1, mode="fan_in")
            nn.init.zeros_(block[0].bias)

    def forward(self, lateral: torch.Tensor, levels: List[torch.Tensor]) -> List[torch.Tensor]:
        refined = []
        for level, refine in zip(levels, self.refine):
            lateral = F.interpolate(lateral, size=level.shape[-2:], mode="bilinear",
                                    align_corners=False)
            a, b = (F.normalize(level, dim=1), F.normalize(lateral, dim=1)) \
                if self.normalized else (level, lateral)
            refined.append(level + refine(torch.cat((a, b), dim=1)))
        return refined
