"""MobileNetV2 with global tokens: MobileInst's backbone outputs (local X3-X5, global X6, Sec. 3.1)
from the bottom-up MobileNetV2 (Sandler et al., CVPR 2018) of ``MODEL.MOBILENET_V2`` (the
"MobileInst MobileNetV2" row of the paper's Table 1).

X3-X5 are its stride-8/16/32 stages; X6 is its stride-32 map average-pooled by 2 (stride 64),
projected by a 1x1 conv + norm to ``MODEL.MNV2_GLOBAL.CHANNELS`` and passed through
``MODEL.MNV2_GLOBAL.DEPTH`` of TopFormer's attention blocks (TopFormer Sec. 3.2). These new
layers take ``MODEL.MNV2_GLOBAL.NORM`` (trainable BN by default): they start from scratch even
when the MobileNetV2 is ImageNet-pretrained with frozen batch norm.
"""
from typing import Dict

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from rtinst.modeling.backbone.mobilenet_v2 import MobileNetV2, build_mobilenet_v2_backbone
from rtinst.modeling.backbone.pretrained import warn_frozen_norm_from_scratch
from rtinst.modeling.layers import ConvNormAct

from .topformer import (
    GLOBAL_STRIDE,
    PyramidPoolAggregation,
    TopFormerAttentionBlock,
    he_fan_out_init,
    resolve_norm,
)

__all__ = ["MobileNetV2Global", "build_mobilenet_v2_global_backbone"]

STAGES = {"x3": "res3", "x4": "res4", "x5": "res5"}


class MobileNetV2Global(Backbone):
    """{"x3", "x4", "x5": MobileNetV2's res3-res5, "x6": res5 pooled to stride 64, projected to
    ``channels`` and refined by ``depth`` TopFormer attention blocks (stochastic depth rising
    linearly to ``drop_path``)}."""

    def __init__(self, bottom_up: MobileNetV2, channels: int = 256, depth: int = 2,
                 num_heads: int = 8, drop_path: float = 0.0, norm="BN"):
        """
        Args:
            bottom_up: a MobileNetV2 returning res3, res4 and res5.
            norm: the global branch's ``ConvNormAct`` norm (e.g. from ``resolve_norm``).
        """
        super().__init__()
        self.bottom_up = bottom_up
        shapes = bottom_up.output_shape()
        self.pool = PyramidPoolAggregation(stride=2)
        self.proj = ConvNormAct(shapes["res5"].channels, channels, 1, norm=norm, activation=None,
                                init=he_fan_out_init)
        self.transformer = nn.Sequential(*(
            TopFormerAttentionBlock(channels, num_heads, drop_path=rate, norm=norm)
            for rate in torch.linspace(0, drop_path, depth).tolist()
        ))
        self._out_features = [*STAGES, "x6"]
        self._out_feature_channels = {name: shapes[s].channels for name, s in STAGES.items()}
        self._out_feature_strides = {name: shapes[s].stride for name, s in STAGES.items()}
        self._out_feature_channels["x6"] = channels
        self._out_feature_strides["x6"] = GLOBAL_STRIDE

    @property
    def size_divisibility(self) -> int:
        return GLOBAL_STRIDE

    def forward(self, x) -> Dict[str, torch.Tensor]:
        features = self.bottom_up(x)
        outputs = {name: features[stage] for name, stage in STAGES.items()}
        outputs["x6"] = self.transformer(self.proj(self.pool([features["res5"]])))
        return outputs


@BACKBONE_REGISTRY.register()
def build_mobilenet_v2_global_backbone(cfg, input_shape: ShapeSpec) -> MobileNetV2Global:
    """MobileNetV2 from ``MODEL.MOBILENET_V2.{PRETRAINED, NORM, FREEZE_AT}`` (res3-res5 whatever
    its OUT_FEATURES) with X6 from ``MODEL.MNV2_GLOBAL.*``."""
    gcfg = cfg.MODEL.MNV2_GLOBAL
    for key in ("CHANNELS", "NUM_HEADS"):
        if gcfg[key] < 1:
            raise ValueError(f"MODEL.MNV2_GLOBAL.{key} must be at least 1, got {gcfg[key]}")
    if gcfg.DEPTH < 0:
        raise ValueError(f"MODEL.MNV2_GLOBAL.DEPTH must be at least 0, got {gcfg.DEPTH}")
    if not 0.0 <= gcfg.DROP_PATH < 1.0:
        raise ValueError(f"MODEL.MNV2_GLOBAL.DROP_PATH must be in [0, 1), got {gcfg.DROP_PATH}")
    norm = resolve_norm(gcfg.NORM, "MODEL.MNV2_GLOBAL.NORM")
    mnv2_cfg = cfg.clone()
    mnv2_cfg.defrost()
    mnv2_cfg.MODEL.MOBILENET_V2.OUT_FEATURES = list(STAGES.values())
    backbone = MobileNetV2Global(build_mobilenet_v2_backbone(mnv2_cfg, input_shape),
                                 gcfg.CHANNELS, gcfg.DEPTH, gcfg.NUM_HEADS, gcfg.DROP_PATH, norm)
    warn_frozen_norm_from_scratch(backbone.proj, gcfg.NORM, "MODEL.MNV2_GLOBAL.NORM",
                                  cfg.MODEL.WEIGHTS)
    return backbone
