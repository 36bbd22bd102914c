"""Freezing a sub-network (rtinst's staged backbones' first stages, ``FREEZE_AT``, as
Detectron2's ResNet freezes its own): no gradient for its parameters, and its
BatchNorm layers turned into Detectron2's ``FrozenBatchNorm2d`` (fixed statistics and affine
transform), so that ``model.train()`` changes nothing in it."""
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

__all__ = ["freeze"]


def freeze(module: nn.Module) -> nn.Module:
    """``module`` with ``requires_grad`` False on every parameter and every BatchNorm2d /
    SyncBatchNorm turned into a FrozenBatchNorm2d with its statistics and affine parameters.
    Children are converted in place, but a BatchNorm ``module`` itself is replaced by a new
    module: the caller must use the returned module (``self.flow = freeze(self.flow)``).
    Raises ValueError for another BatchNorm (1-D, 3-D), which no frozen layer replaces."""
    for parameter in module.parameters():
        parameter.requires_grad = False
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(module)
    for name, child in frozen.named_modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            raise ValueError(f"freeze: {type(child).__name__} {name or '(the module)'} cannot be "
                             "frozen (only BatchNorm2d and SyncBatchNorm have a frozen version)")
    return frozen
