"""Mask decoders: the local features X3-X5 (strides 8, 16, 32) and the global X6 (stride 64) ->
one stride-8 map X_mask, with which each kernel K gives its mask M = K . X_mask (Sec. 3.3).

* ``SemanticEnhancedMaskDecoder`` (the paper's, Fig. 3): the levels are fused top-down then
  bottom-up (as FPN / PANet, "iterative top-down and bottom-up multi-scale fusion"), a semantic
  enhancer injects X6 into each fused level, and the three are summed at stride 8. The
  enhancer is TopFormer's gated form, x * sigmoid(a(X6)) + b(X6) with a, b 1x1
  convolution + norm and X6 upsampled; the fusions are depthwise-separable 3x3 convolutions
  (mobile-sized: the paper gives the structure, not the layers).
* ``SparseInstMaskDecoder`` (Table 6's alternative): SparseInst's FPN-PPM encoder (top-down
  fusion of X3-X5 with X6 as the pooled context on top) and four 3x3 convolutions at stride 8.
"""
import torch
import torch.nn.functional as F
from torch import nn

from rtinst.modeling.layers import ConvNormAct, SeparableConv2d

from .config import MASK_DECODERS

__all__ = ["SemanticEnhancer", "SemanticEnhancedMaskDecoder", "SparseInstMaskDecoder",
           "build_mask_decoder", "instance_masks"]


def instance_masks(kernels: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
    """M = K . X_mask (Sec. 3.3, Eq. 1): (B, N, H, W) mask logits of the (B, N, D) kernels on the
    (B, D, H, W) mask features."""
    return torch.einsum("bnd,bdhw->bnhw", kernels, mask_features)


def _upsample_to(x, reference):
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class SemanticEnhancer(nn.Module):
    """x * sigmoid(a(g)) + b(g): the global features g (X6) gate and enrich the level x."""

    def __init__(self, channels: int, global_channels: int, norm: str = "BN"):
        super().__init__()
        self.gate = ConvNormAct(global_channels, channels, 1, norm=norm, activation=None)
        self.embedding = ConvNormAct(global_channels, channels, 1, norm=norm, activation=None)

    def forward(self, x: torch.Tensor, global_features: torch.Tensor) -> torch.Tensor:
        gate = _upsample_to(self.gate(global_features), x).sigmoid()
        return x * gate + _upsample_to(self.embedding(global_features), x)


class SemanticEnhancedMaskDecoder(nn.Module):
    """(X3, X4, X5), X6 -> X_mask (B, kernel dim, H / 8, W / 8)."""

    def __init__(self, in_channels, global_channels: int, channels: int = 128,
                 kernel_dim: int = 128, norm: str = "BN"):
        super().__init__()
        levels = len(in_channels)
        self.lateral = nn.ModuleList(ConvNormAct(c, channels, 1, norm=norm) for c in in_channels)
        self.top_down = nn.ModuleList(SeparableConv2d(channels, channels, 3, norm)
                                      for _ in range(levels - 1))
        self.bottom_up = nn.ModuleList(SeparableConv2d(channels, channels, 3, norm)
                                       for _ in range(levels - 1))
        self.enhancers = nn.ModuleList(SemanticEnhancer(channels, global_channels, norm)
                                       for _ in range(levels))
        self.fuse = ConvNormAct(channels, channels, 3, norm=norm)
        self.project = nn.Conv2d(channels, kernel_dim, 1)

    def forward(self, features, global_features):
        x = [lateral(f) for lateral, f in zip(self.lateral, features)]
        for i in range(len(x) - 2, -1, -1):  # top-down: stride 32 -> 8
            x[i] = self.top_down[i](x[i] + _upsample_to(x[i + 1], x[i]))
        for i in range(1, len(x)):  # bottom-up: stride 8 -> 32
            x[i] = self.bottom_up[i - 1](x[i] + F.max_pool2d(x[i - 1], 2, ceil_mode=True))
        x = [enhance(level, global_features) for enhance, level in zip(self.enhancers, x)]
        fused = x[0] + sum(_upsample_to(level, x[0]) for level in x[1:])
        return self.project(self.fuse(fused))


class SparseInstMaskDecoder(nn.Module):
    """SparseInst's encoder and mask branch: top-down FPN of X3-X5 with the global features as
    the pooled context, summed at stride 8, then ``num_convs`` 3x3 convolutions."""

    def __init__(self, in_channels, global_channels: int, channels: int = 128,
                 kernel_dim: int = 128, num_convs: int = 4, norm: str = "BN"):
        super().__init__()
        self.lateral = nn.ModuleList(ConvNormAct(c, channels, 1, norm=norm) for c in in_channels)
        self.context = ConvNormAct(global_channels, channels, 1, norm=norm)
        self.outputs = nn.ModuleList(ConvNormAct(channels, channels, 3, norm=norm)
                                     for _ in in_channels)
        self.convs = nn.Sequential(*(ConvNormAct(channels, channels, 3, norm=norm)
                                     for _ in range(num_convs)))
        self.project = nn.Conv2d(channels, kernel_dim, 1)

    def forward(self, features, global_features):
        x = [lateral(f) for lateral, f in zip(self.lateral, features)]
        x[-1] = x[-1] + _upsample_to(self.context(global_features), x[-1])
        for i in range(len(x) - 2, -1, -1):
            x[i] = x[i] + _upsample_to(x[i + 1], x[i])
        x = [output(level) for output, level in zip(self.outputs, x)]
        fused = x[0] + sum(_upsample_to(level, x[0]) for level in x[1:])
        return self.project(self.convs(fused))


def build_mask_decoder(kind: str, in_channels, global_channels: int, channels: int,
                       kernel_dim: int, num_convs: int, norm: str) -> nn.Module:
    """The ``MODEL.MOBILEINST.MASK_DECODER.KIND`` decoder."""
    if kind == "semantic_enhanced":
        return SemanticEnhancedMaskDecoder(in_channels, global_channels, channels, kernel_dim,
                                           norm)
    if kind == "sparseinst":
        return SparseInstMaskDecoder(in_channels, global_channels, channels, kernel_dim,
                                     num_convs, norm)
    raise ValueError(f"MODEL.MOBILEINST.MASK_DECODER.KIND must be one of {list(MASK_DECODERS)}, "
                     f"got {kind!r}")
