"""FPN with the extra coarse levels FCOS predicts on (FCOS Sec. 3.2: P6, P7 from P5).

Detectron2's ``FPN`` builds P3-P5 from a bottom-up network; FCOS adds P6 and P7 by 3x3 stride-2
convolutions on P5 (``MODEL.FCOS.TOP_LEVELS`` = 2), only P6 (1), or none (0, real-time models).
"""
import math

import fvcore.nn.weight_init as weight_init
from torch import nn

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, Backbone, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

__all__ = [
    "LastLevelP6",
    "build_top_block",
    "build_fpn_with_top_levels",
    "build_rcnn_fpn",
    "build_fcos_resnet_fpn_backbone",
]


class LastLevelP6(nn.Module):
    """One extra level: P6 = 3x3 stride-2 conv of ``in_feature`` (the coarsest FPN output)."""

    def __init__(self, in_channels, out_channels, in_feature="p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x):
        return [self.p6(x)]


def build_top_block(num_levels, channels, in_feature):
    """The block adding ``num_levels`` (0, 1 or 2) levels on top of ``in_feature`` (e.g. "p5")."""
    if num_levels == 0:
        return None
    if num_levels == 1:
        return LastLevelP6(channels, channels, in_feature)
    if num_levels == 2:
        return LastLevelP6P7(channels, channels, in_feature)
    raise ValueError(f"MODEL.FCOS.TOP_LEVELS must be 0, 1 or 2, got {num_levels}")


def build_fpn_with_top_levels(cfg, bottom_up: Backbone) -> FPN:
    """Detectron2's FPN on any bottom-up ``Backbone`` plus ``MODEL.FCOS.TOP_LEVELS`` extra levels.

    The FPN takes ``MODEL.FPN.IN_FEATURES`` (the bottom-up's own output features when empty) and
    has ``MODEL.FPN.OUT_CHANNELS`` channels; the extra levels are computed from its coarsest output.
    """
    in_features = list(cfg.MODEL.FPN.IN_FEATURES) or list(bottom_up.output_shape().keys())
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    coarsest_stride = bottom_up.output_shape()[in_features[-1]].stride
    top_block = build_top_block(
        cfg.MODEL.FCOS.TOP_LEVELS, out_channels, in_feature=f"p{int(math.log2(coarsest_stride))}"
    )
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


def build_rcnn_fpn(cfg, bottom_up: Backbone) -> FPN:
    """Detectron2's standard FPN for R-CNN models (P2-P5 + max-pooled P6, as
    ``build_resnet_fpn_backbone``) on any bottom-up ``Backbone``."""
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape):
    """Detectron2 ResNet (``MODEL.RESNETS.*``) + FPN + FCOS top levels."""
    return build_fpn_with_top_levels(cfg, build_resnet_backbone(cfg, input_shape))
