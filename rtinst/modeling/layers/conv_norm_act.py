"""Convolution, normalisation, activation: the unit most layers of the methods are made of."""
from functools import partial
from typing import Callable, Optional, Union

from torch import nn

from detectron2.layers import Conv2d, get_norm

__all__ = ["ConvNormAct"]

RELU = partial(nn.ReLU, inplace=True)


class ConvNormAct(nn.Sequential):
    """Detectron2's ``Conv2d`` (no bias when normalised, padded to keep the size at stride 1),
    then ``get_norm(norm, out_channels)`` and ``activation()``, as children 0, 1, 2 (the layout
    of AdelaiDet's and EfficientNet's checkpoints); no norm or activation child when they are
    ``""`` / ``None``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, norm: Union[str, Callable[[int], nn.Module]] = "",
                 activation: Optional[Callable[[], nn.Module]] = RELU,
                 init: Optional[Callable[[nn.Module], None]] = None):
        """
        Args:
            norm: a ``get_norm`` name ("BN", "SyncBN", "FrozenBN", "GN", ...), or a callable
                taking the channel count (e.g. ``functools.partial(nn.BatchNorm2d, eps=1e-3)``),
                or "" for none.
            activation: a module factory (default: in-place ReLU), or None for none.
            init: applied to the convolution, e.g. fvcore's ``c2_msra_fill`` (He fan-out
                weights, zero bias); None keeps PyTorch's initialisation.
        """
        conv = Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                      groups=groups, bias=not norm)
        if init is not None:
            init(conv)
        layers = [conv]
        if norm:
            layers.append(get_norm(norm, out_channels))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
