"""BlendMask (Chen et al., CVPR 2020): importing this package registers the ``BlendMask``
meta-architecture and its bottom modules; ``add_blendmask_config`` adds its config keys."""
from .basis_module import BASIS_MODULE_REGISTRY, build_basis_module
from .blender import Blender, blend
from .blendmask import BlendMask
from .config import add_blendmask_config

__all__ = ["BASIS_MODULE_REGISTRY", "BlendMask", "Blender", "add_blendmask_config", "blend",
           "build_basis_module"]
