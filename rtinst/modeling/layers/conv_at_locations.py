"""A size-keeping convolution evaluated only at chosen locations of its input.

A dense prediction layer whose outputs are read at a few locations need not run everywhere:
BlendMask's top layer (Sec. 3.2) is a 3x3 convolution from the 256-channel box tower to
K x M x M = 784 attention channels on every FPN location, yet inference reads it only at the
<= 100 detections kept, so the references spend a large share of BlendMask's time on outputs
they discard; BlitzMask's size and coefficient branches (Sec. 2.1) are read at the heatmap's
peaks only, through their one depthwise 3x3 convolution. Each output here is the convolution of
the same k x k patch (with the same zero padding at the border): the dense layer's value to float
rounding (the order of the sums may differ; <= 3e-6 on BlendMask R-50's 784 attentions of
magnitude ~1).
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["check_size_keeping", "conv2d_at_locations"]


def check_size_keeping(conv: nn.Module, name: str) -> None:
    """A ``TypeError`` naming ``name`` unless ``conv`` is an ``nn.Conv2d`` with stride 1,
    dilation 1, zero padding and padding (k - 1) / 2 for its odd kernel sizes k (grouped and
    depthwise convolutions included)."""
    keeps_size = (
        isinstance(conv, nn.Conv2d)
        and conv.stride == (1, 1) and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and all(k % 2 == 1 and p == k // 2 for k, p in zip(conv.kernel_size, conv.padding))
    )
    if not keeps_size:
        raise TypeError(f"{name} must be a size-keeping nn.Conv2d (stride 1, dilation 1, "
                        f"padding (k - 1) / 2, zero padding) to be evaluated at chosen "
                        f"locations; got {conv!r}")


def conv2d_at_locations(conv: nn.Conv2d, feature: torch.Tensor,
                        location_inds: torch.Tensor) -> torch.Tensor:
    """``conv(feature[None])[0]`` at the row-major ``location_inds`` of the (C, H, W)
    ``feature``, as (n, out_channels), computed from the n k x k input patches only
    (``conv`` as ``check_size_keeping`` requires)."""
    kh, kw = conv.kernel_size
    height, width = feature.shape[-2:]
    rows = (location_inds // width)[:, None] + torch.arange(-(kh // 2), kh // 2 + 1,
                                                             device=feature.device)
    cols = (location_inds % width)[:, None] + torch.arange(-(kw // 2), kw // 2 + 1,
                                                            device=feature.device)
    # the patches read from the map itself (no padded copy of it), zero where they overhang
    inside = (((rows >= 0) & (rows < height))[:, :, None]
              & ((cols >= 0) & (cols < width))[:, None, :])  # (n, kh, kw)
    flat = rows.clamp(0, height - 1)[:, :, None] * width + cols.clamp(0, width - 1)[:, None, :]
    # one gather along the flattened map (indexing rows and columns would transpose the map)
    patches = feature.flatten(-2)[:, flat.flatten()].reshape(feature.shape[0], *flat.shape)
    patches = patches.transpose(0, 1) * inside[:, None].to(feature.dtype)
    return F.conv2d(patches, conv.weight, conv.bias, groups=conv.groups).flatten(1)
