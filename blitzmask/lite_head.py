"""BlitzMask's lite head (Sec. 2.1, Fig. 1): four branches on the stride-4 FPN feature, each a
few depthwise-separable 3x3 convolutions and a 1x1 predictor, giving

    Heatmap Y (C channels, logits), Size D (4: distances l, t, r, b in strides, exp-activated),
    Coefficients Lambda (K) and Spanning Set B (K).

Inference reads Size and Coefficients at the heatmap's peaks only (``at_cells``): those two
branches run on the peaks' 3x3 patches instead of the whole stride-4 map.
"""
import math
from typing import NamedTuple, Tuple

import torch
from torch import nn

from rtinst.modeling.layers import (
    SeparableConv2d,
    check_size_keeping,
    conv2d_at_locations,
    normal_init,
    prior_probability_bias,
)

__all__ = ["HeadOutputs", "LiteHead", "branch_at_cells"]

MAX_LOG_SIZE = 10.0  # exp(10) strides: far beyond any image, keeps exp finite


class HeadOutputs(NamedTuple):
    """Per-image maps, each (B, channels, H, W)."""

    heatmap: torch.Tensor  # logits of Y
    sizes: torch.Tensor  # D
    coefficients: torch.Tensor  # Lambda
    spanning_set: torch.Tensor  # B


def _branch(in_channels, channels, num_convs, out_channels, norm):
    layers = []
    for i in range(num_convs):
        layers.append(SeparableConv2d(in_channels if i == 0 else channels, channels, norm=norm))
    layers.append(normal_init(nn.Conv2d(channels if num_convs else in_channels, out_channels, 1)))
    return nn.Sequential(*layers)


def branch_at_cells(branch: nn.Sequential, feature: torch.Tensor,
                    cells: torch.Tensor) -> torch.Tensor:
    """``branch(feature[None])[0]`` at the flat ``cells`` of the (C, H, W) ``feature``, as
    (n, out_channels). A branch of one separable convolution (``NUM_HEAD_CONVS`` 1) runs on the
    cells' 3x3 patches only (``conv2d_at_locations`` for its depthwise convolution, the rest is
    pointwise); a deeper one, whose later convolutions would see computed borders, densely."""
    if len(branch) != 2:
        return branch(feature[None])[0].flatten(1)[:, cells].t()
    separable, predictor = branch
    depthwise = separable[0]
    check_size_keeping(depthwise[0], "the lite head's depthwise convolution")
    x = conv2d_at_locations(depthwise[0], feature, cells)[:, :, None, None]
    for layer in list(depthwise)[1:]:  # its norm and activation
        x = layer(x)
    return predictor(separable[1](x)).flatten(1)


class LiteHead(nn.Module):
    """The four branches; the heatmap starts at ``prior_prob`` everywhere (focal-loss init)."""

    def __init__(self, in_channels, num_classes, num_bases, channels=64, num_convs=1, norm="BN",
                 prior_prob=0.1):
        super().__init__()
        self.heatmap = _branch(in_channels, channels, num_convs, num_classes, norm)
        self.size = _branch(in_channels, channels, num_convs, 4, norm)
        self.coefficients = _branch(in_channels, channels, num_convs, num_bases, norm)
        self.spanning_set = _branch(in_channels, channels, num_convs, num_bases, norm)
        nn.init.constant_(self.heatmap[-1].bias, prior_probability_bias(prior_prob))
        # the spanning set starts with unit-scale channels, so that Eq. 1 can fit masks at once
        nn.init.normal_(self.spanning_set[-1].weight, std=1 / math.sqrt(channels))

    def forward(self, feature: torch.Tensor) -> HeadOutputs:
        return HeadOutputs(
            heatmap=self.heatmap(feature),
            sizes=torch.exp(self.size(feature).clamp(max=MAX_LOG_SIZE)),
            coefficients=self.coefficients(feature),
            spanning_set=self.spanning_set(feature),
        )

    def at_cells(self, feature: torch.Tensor, cells: torch.Tensor
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Size D (n, 4) and Coefficients Lambda (n, K) at the flat ``cells`` of one image's
        (C, H, W) ``feature``: ``forward``'s values there, to float rounding."""
        sizes = torch.exp(branch_at_cells(self.size, feature, cells).clamp(max=MAX_LOG_SIZE))
        return sizes, branch_at_cells(self.coefficients, feature, cells)
