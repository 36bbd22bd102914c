"""Depthwise-separable convolution (MobileNet, Howard et al. 2017), the mobile layer of
BlitzMask's FPN and head."""
from torch import nn

from .conv_norm_act import ConvNormAct

__all__ = ["SeparableConv2d"]


class SeparableConv2d(nn.Sequential):
    """Depthwise k x k ``ConvNormAct``, then a pointwise 1x1 one (each with ``norm`` and ReLU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, norm="BN"):
        super().__init__(
            ConvNormAct(in_channels, in_channels, kernel_size, groups=in_channels, norm=norm),
            ConvNormAct(in_channels, out_channels, 1, norm=norm),
        )
