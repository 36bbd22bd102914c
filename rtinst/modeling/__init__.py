"""rtinst's models; importing this module registers the backbones, FCOS and the meta-arch.
For set-prediction and video methods: the Hungarian matcher (``matcher``), Dice / focal losses
(``losses``), freezing a sub-network (``freeze.freeze``, not re-exported here: it would hide
its module) and running part of a backbone (``backbone.partial``)."""
from . import backbone, fcos, layers, meta_arch
from .backbone import (
    MobileNetV2,
    build_fcos_mobilenet_v2_fpn_backbone,
    build_fcos_resnet_fpn_backbone,
    build_fpn_with_top_levels,
)
from .fcos import FCOS, FCOSHead
from .losses import dice_loss, num_instances_over_workers, pairwise_dice_loss, sigmoid_focal_loss
from .matcher import HungarianMatcher, linear_assignment
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
    "HungarianMatcher",
    "linear_assignment",
    "dice_loss",
    "pairwise_dice_loss",
    "sigmoid_focal_loss",
    "num_instances_over_workers",
]
