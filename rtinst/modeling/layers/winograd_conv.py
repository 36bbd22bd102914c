"""3 x 3 convolutions by Winograd's minimal filtering F(4x4, 3x3), for CPU inference.

On CPUs without AVX-512, oneDNN (PyTorch's CPU convolution) computes a 3 x 3 convolution
directly: 9 multiply-adds per input channel, output channel and output location. Winograd's
F(m x m, 3 x 3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016,
Sec. 4-5) computes each 4 x 4 output tile Y = A^T [(G g G^T) * (B^T d B)] A from a 6 x 6 input
tile d with 36 instead of 144 multiplications per channel pair: the channel sums become 36
matrix products, one per tile position, with the kernel transform G g G^T done once. Here the
input and output transforms are one small matrix product each (the Kronecker form
vec(B^T d B) = (B^T kron B^T) vec(d)), all run by PyTorch's BLAS on its own threads, a band of
tile rows at a time so that the transformed tiles stay cache-sized. The results equal the
direct convolution's to float rounding (relative error ~5e-6 of the largest output, against
~1e-6 for the direct one), not bit for bit.

It pays off where the channel products outweigh the transforms and the per-call overhead
(``use_winograd``): measured on a 2-core AVX2 CPU by ``tools/winograd_benchmark.py``
(``benchmarks/winograd_conv_*.json``), e.g. 256 -> 256 channels on a 64 x 80 map 0.5-0.7x the
direct time, 128 channels on 8 x 10 2x.
"""
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d

__all__ = ["use_winograd", "use_winograd_convs", "winograd_conv3x3", "winograd_kernel"]

MIN_CHANNEL_EFFICIENCY = 62  # in x out / (in + out) channels, times the share of tiles used
MIN_WORK = 2 ** 23  # in x out channels x output locations of the batch
BAND = 2 ** 15  # tiles x channels transformed at a time

# Lavin & Gray's F(4x4, 3x3) matrices, interpolation points 0, +-1, +-2 and infinity
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                   dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                  dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
_INPUT_TRANSFORM = torch.kron(_BT, _BT).float()  # (36, 36) on row-major 6 x 6 tiles
_OUTPUT_TRANSFORM = torch.kron(_AT, _AT).float()  # (16, 36)


def winograd_kernel(weight: torch.Tensor) -> torch.Tensor:
    """The (36, in_channels, out_channels) transformed kernels G g G^T of the
    (out_channels, in_channels, 3, 3) ``weight``, computed in float64, stored in float32."""
    kernel = torch.einsum("ai,oxij,bj->abxo", _G, weight.detach().double(), _G)
    return kernel.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def _tiles(size: int) -> int:
    return -(-size // 4)


def _channel_efficiency(in_channels: int, out_channels: int) -> float:
    return in_channels * out_channels / (in_channels + out_channels)


def use_winograd(in_channels: int, out_channels: int, n: int, height: int, width: int) -> bool:
    """Whether ``winograd_conv3x3`` beats the direct convolution (on the CPU measured): enough
    channel products per transformed value (in x out / (in + out), times the share of the
    4 x 4 tiles inside the map: 14 x 14 RoIs fill 77% of 16 x 16) and enough work to outweigh
    the overhead of its ~10 operations."""
    used = height * width / (16 * _tiles(height) * _tiles(width))
    efficiency = _channel_efficiency(in_channels, out_channels) * used
    work = in_channels * out_channels * n * height * width
    return efficiency >= MIN_CHANNEL_EFFICIENCY and work >= MIN_WORK


def winograd_conv3x3(x: torch.Tensor, kernel: torch.Tensor,
                     bias: torch.Tensor = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for the float32 (N, C, H, W) ``x`` and
    ``kernel = winograd_kernel(weight)``; returned in channels-last memory order."""
    n, channels, height, width = x.shape
    out_channels = kernel.shape[2]
    tiles_h, tiles_w = _tiles(height), _tiles(width)
    # NHWC, zero-padded by 1 on top and left and up to whole tiles (plus 1) at bottom and right
    padded = F.pad(x.permute(0, 2, 3, 1),
                   (0, 0, 1, 4 * tiles_w + 1 - width, 1, 4 * tiles_h + 1 - height))
    out = x.new_empty(n, 4 * tiles_h, 4 * tiles_w, out_channels)
    band = max(1, BAND // (n * tiles_w * max(channels, out_channels)))  # tile rows
    for top in range(0, tiles_h, band):
        rows = min(band, tiles_h - top)
        tiles = n * rows * tiles_w
        d = (padded[:, 4 * top:4 * (top + rows) + 2].unfold(1, 6, 4).unfold(2, 6, 4)
             .permute(4, 5, 0, 1, 2, 3).reshape(36, tiles * channels))  # the 6 x 6 tiles
        v = (_INPUT_TRANSFORM @ d).view(36, tiles, channels)
        m = torch.bmm(v, kernel)  # (36, tiles, out_channels): the channel sums
        y = _OUTPUT_TRANSFORM @ m.view(36, tiles * out_channels)
        if bias is not None:
            y.view(16, tiles, out_channels).add_(bias)
        out[:, 4 * top:4 * (top + rows)].view(n, rows, 4, tiles_w, 4, out_channels).copy_(
            y.view(4, 4, n, rows, tiles_w, out_channels).permute(2, 3, 0, 4, 1, 5))
    return out[:, :height, :width].permute(0, 3, 1, 2)


class _Winograd:
    """The convolution of an ``nn.Conv2d`` subclass by ``winograd_conv3x3`` where that is
    faster (a float32 CPU batch for which ``use_winograd`` holds), else by ``F.conv2d``."""

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
                and use_winograd(self.in_channels, self.out_channels, x.shape[0], *x.shape[2:])):
            if self.winograd_kernel is None:  # at first use: no memory for convs never used
                with torch.inference_mode(False):  # a normal tensor, even in inference mode
                    self.winograd_kernel = winograd_kernel(self.weight)
            return winograd_conv3x3(x, self.winograd_kernel, self.bias)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class WinogradConv2d(_Winograd, nn.Conv2d):
    """An ``nn.Conv2d`` whose large 3 x 3 convolutions run by ``winograd_conv3x3``."""

    def forward(self, x):
        return self._convolve(x)


class WinogradD2Conv2d(_Winograd, Conv2d):
    """A Detectron2 ``Conv2d`` (conv, then its norm and activation) whose large 3 x 3
    convolutions run by ``winograd_conv3x3``."""

    def forward(self, x):
        x = self._convolve(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


_WINOGRAD_CLASS = {nn.Conv2d: WinogradConv2d, Conv2d: WinogradD2Conv2d}


def _eligible(conv: nn.Conv2d) -> bool:
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.groups == 1 and conv.padding == (1, 1) and conv.padding_mode == "zeros"
            # enough channels for ``use_winograd`` on a map whose tiles are all inside it
            and _channel_efficiency(conv.in_channels, conv.out_channels)
            >= MIN_CHANNEL_EFFICIENCY)


def use_winograd_convs(model: nn.Module) -> nn.Module:
    """``model`` with each size-keeping 3 x 3 ``nn.Conv2d`` or Detectron2 ``Conv2d`` with
    channels enough for ``use_winograd`` turned, in place, into its Winograd subclass, which
    keeps its weights and adds their transform at its first Winograd call (4x the weights'
    memory: FCOS R-50 +270 MB at 512 x 640). Subclasses of those convolutions (deformable
    ones...) are left alone. For inference: the transformed kernels are computed once, from
    the weights as they are then, and take no gradient."""
    for module in model.modules():
        winograd = _WINOGRAD_CLASS.get(type(module))
        if winograd is not None and _eligible(module):
            module.__class__ = winograd
            module.register_buffer("winograd_kernel", None, persistent=False)
    return model
