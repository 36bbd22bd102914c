"""A deformable convolution (Dai et al., ICCV 2017) that predicts its own sampling offsets."""
from torch import nn
from torchvision.ops import DeformConv2d

from .head_init import normal_init

__all__ = ["DeformConv3x3"]


class DeformConv3x3(nn.Module):
    """3x3 deformable convolution (torchvision) whose offsets come from a 3x3 conv, zero-initialised
    so that it starts as a plain convolution (itself initialised as a head layer)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.offset = nn.Conv2d(in_channels, 2 * 3 * 3, kernel_size=3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = normal_init(DeformConv2d(in_channels, out_channels, kernel_size=3, padding=1))

    def forward(self, x):
        return self.conv(x, self.offset(x))
