"""BlitzMask's lite head (Sec. 2.1, Fig. 1): four branches on the stride-4 FPN feature, each a
few depthwise-separable 3x3 convolutions and a 1x1 predictor, giving

    Heatmap Y (C channels, logits), Size D (4: distances l, t, r, b in strides, exp-activated),
    Coefficients Lambda (K) and Spanning Set B (K).
"""
import math
from typing import NamedTuple

import torch
from torch import nn

from rtinst.modeling.layers import SeparableConv2d, normal_init, prior_probability_bias

__all__ = ["HeadOutputs", "LiteHead"]

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
