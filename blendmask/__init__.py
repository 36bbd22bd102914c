"""BlendMask (Chen et al., CVPR 2020): importing this package registers the ``BlendMask``
meta-architecture and its bottom modules, and declares the method to rtinst with its config keys
(``add_blendmask_config``)."""
from rtinst import register_method
from rtinst.export import AnySizePipeline

from .basis_module import BASIS_MODULE_REGISTRY, build_basis_module
from .blender import Blender, blend
from .blendmask import BlendMask
from .config import add_blendmask_config

__all__ = ["BASIS_MODULE_REGISTRY", "BlendMask", "Blender", "add_blendmask_config", "blend",
           "build_basis_module"]

register_method("blendmask", add_config=add_blendmask_config,
                class_count_keys=("MODEL.BASIS_MODULE.NUM_CLASSES",),
                export_pipelines={"BlendMask": AnySizePipeline})
