"""rtinst's models; importing this module registers the backbones, FCOS and the meta-arch."""
from . import backbone, fcos, layers, meta_arch
from .backbone import (
    MobileNetV2,
    build_fcos_mobilenet_v2_fpn_backbone,
    build_fcos_resnet_fpn_backbone,
    build_fpn_with_top_levels,
)
from .fcos import FCOS, FCOSHead
from .meta_arch import OneStageDetector

__all__ = [
    "backbone",
    "fcos",
    "layers",
    "meta_arch",
    "MobileNetV2",
    "build_fpn_with_top_levels",
    "build_fcos_resnet_fpn_backbone",
    "build_fcos_mobilenet_v2_fpn_backbone",
    "FCOS",
    "FCOSHead",
    "OneStageDetector",
]
