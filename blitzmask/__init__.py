"""BlitzMask (Samsung, 2022): importing this package registers the ``BlitzMask``
meta-architecture; ``add_blitzmask_config`` adds its config keys."""
from .blitzmask import BlitzMask
from .config import add_blitzmask_config
from .lite_head import HeadOutputs, LiteHead

__all__ = ["BlitzMask", "HeadOutputs", "LiteHead", "add_blitzmask_config"]
