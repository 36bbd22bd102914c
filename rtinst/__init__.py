"""rtinst: what the real-time instance-segmentation methods share (FCOS, backbones, data,
evaluation, export, benchmarking). Importing it registers its Detectron2 components."""
from .config import add_rtinst_config, get_cfg
from . import data, modeling  # noqa: F401  (fill Detectron2's registries and DatasetCatalog)

__all__ = ["add_rtinst_config", "get_cfg"]
