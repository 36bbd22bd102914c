"""ProtoNet (YOLACT, Bolya et al., ICCV 2019, Sec. 3.1 and Fig. 3): the fully convolutional
branch that predicts k prototype masks for the whole image, here on one or more FPN levels as
BlendMask's Proto-FPN bottom module (Sec. 4.1) uses it.

Each input level is refined by a 3x3 ``ConvNormAct`` to ``channels``, upsampled to the finest
level and summed; then ``num_convs`` 3x3 ``ConvNormAct``, a 2x bilinear upsampling, one more 3x3
``ConvNormAct`` and a 1x1 predictor to k. Output stride: half the finest input's. With a single
input level this is YOLACT's protonet on P3 (its refine conv being the first of YOLACT's three).
"""
from functools import partial
from typing import List, Sequence

import torch
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from .conv_norm_act import ConvNormAct
from .head_init import normal_init

__all__ = ["ProtoNet", "upsample_to"]


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``x`` bilinearly resized to the spatial size of ``reference``."""
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class ProtoNet(nn.Module):
    """k prototypes at half the finest input's stride from a list of feature maps (fine to
    coarse). Parameter names (``refine``, ``tower``) are AdelaiDet's."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_convs: int,
                 num_prototypes: int, norm=""):
        """
        Args:
            in_channels: channels of each input level, finest first.
            channels: width of every conv; num_convs: 3x3 convs before the upsampling.
            num_prototypes: k; norm: ``get_norm`` name ("" for none, as in YOLACT).
        """
        super().__init__()
        conv = partial(ConvNormAct, kernel_size=3, norm=norm, init=weight_init.c2_msra_fill)
        self.refine = nn.ModuleList([conv(c, channels) for c in in_channels])
        tower = [conv(channels, channels) for _ in range(num_convs)]
        tower += [
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv(channels, channels),
            normal_init(nn.Conv2d(channels, num_prototypes, kernel_size=1)),
        ]
        self.tower = nn.Sequential(*tower)

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """(N, k, 2H, 2W) prototype logits, (H, W) being the first (finest) input's size."""
        x = self.refine[0](features[0])
        for refine, feature in zip(self.refine[1:], features[1:]):
            x = x + upsample_to(refine(feature), x)
        return self.tower(x)
