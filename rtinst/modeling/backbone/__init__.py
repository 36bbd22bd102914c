"""Bottom-up backbones + FPN builders registered in Detectron2's ``BACKBONE_REGISTRY``."""
from .efficientnet_lite import (
    EFFICIENTNET_LITE_VARIANTS,
    EfficientNetLite,
    EfficientNetLiteVariant,
    MBConvBlock,
    build_efficientnet_lite_backbone,
    build_fcos_efficientnet_lite_fpn_backbone,
)
from .fpn import (
    LastLevelP6,
    build_fcos_resnet_fpn_backbone,
    build_fpn_with_top_levels,
    build_top_block,
)
from .mobilenet_v2 import (
    MobileNetV2,
    build_fcos_mobilenet_v2_fpn_backbone,
    build_mobilenet_v2_backbone,
    build_mobilenet_v2_fpn_backbone,
)
from .partial import named_stages, run_stages
from .separable_fpn import SeparableFPN, build_separable_fpn_backbone
from .vovnet import (
    VOVNET_SPECS,
    EffectiveSE,
    OSAModule,
    VoVNet,
    VoVNetSpec,
    build_fcos_vovnet_fpn_backbone,
    build_vovnet_backbone,
    build_vovnet_fpn_backbone,
    vovnet_spec,
)

__all__ = [
    "LastLevelP6",
    "build_top_block",
    "build_fpn_with_top_levels",
    "build_fcos_resnet_fpn_backbone",
    "MobileNetV2",
    "build_mobilenet_v2_backbone",
    "build_fcos_mobilenet_v2_fpn_backbone",
    "build_mobilenet_v2_fpn_backbone",
    "EfficientNetLiteVariant",
    "EFFICIENTNET_LITE_VARIANTS",
    "MBConvBlock",
    "EfficientNetLite",
    "build_efficientnet_lite_backbone",
    "build_fcos_efficientnet_lite_fpn_backbone",
    "named_stages",
    "run_stages",
    "SeparableFPN",
    "build_separable_fpn_backbone",
    "VoVNetSpec",
    "VOVNET_SPECS",
    "vovnet_spec",
    "EffectiveSE",
    "OSAModule",
    "VoVNet",
    "build_vovnet_backbone",
    "build_vovnet_fpn_backbone",
    "build_fcos_vovnet_fpn_backbone",
]
