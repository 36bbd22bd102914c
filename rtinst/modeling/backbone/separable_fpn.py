"""An FPN made only of mobile-friendly layers (BlitzMask Sec. 2.1): 1x1 lateral convolutions,
bilinear upsampling in the top-down path (no transposed convolution) and a depthwise-separable
3x3 output convolution per returned level. Its finest level, P2 at stride 4, is the input of
BlitzMask's heads; any bottom-up network registered in ``BACKBONE_REGISTRY`` can feed it.
"""
import math

import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone

from ..layers import SeparableConv2d

__all__ = ["SeparableFPN", "build_separable_fpn_backbone"]


def upsample_to(top, lateral):
    """``top`` resized bilinearly to ``lateral``'s size; by a constant factor 2 when that is the
    size (always, for inputs padded to the size divisibility): the same values, and an exported
    graph of any input size then resizes by constant scales instead of sizes computed at run
    time, which ONNX Runtime runs in its blocked layout."""
    if tuple(lateral.shape[-2:]) == tuple(2 * s for s in top.shape[-2:]):
        return F.interpolate(top, scale_factor=2.0, mode="bilinear", align_corners=False)
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)


class SeparableFPN(Backbone):
    """Top-down feature pyramid on ``in_features`` (fine to coarse): P_l = lateral_l(C_l) +
    bilinear-upsampled P_{l+1}; returns ``out_features`` (e.g. ["p2"]) after a separable conv."""

    def __init__(self, bottom_up: Backbone, in_features, out_channels, out_features=("p2",),
                 norm="BN"):
        super().__init__()
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.SEPARABLE_FPN.IN_FEATURES {missing} are not outputs of the bottom-up "
                f"network ({sorted(shapes)}): add them to its OUT_FEATURES"
            )
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        levels = {f"p{int(math.log2(shapes[f].stride))}": f for f in self.in_features}
        unknown = [f for f in out_features if f not in levels]
        if unknown:
            raise ValueError(
                f"MODEL.SEPARABLE_FPN.OUT_FEATURES {unknown} not among the levels {sorted(levels)}"
            )
        self.level_names = list(levels)
        self.laterals = nn.ModuleList(  # 1x1 conv + norm, as Detectron2's FPN's
            Conv2d(shapes[f].channels, out_channels, 1, bias=not norm,
                   norm=get_norm(norm, out_channels))
            for f in self.in_features
        )
        self.outputs = nn.ModuleDict(
            {p: SeparableConv2d(out_channels, out_channels, norm=norm) for p in out_features}
        )
        self._out_features = list(out_features)
        self._out_feature_strides = {p: shapes[levels[p]].stride for p in out_features}
        self._out_feature_channels = {p: out_channels for p in out_features}
        self._size_divisibility = shapes[self.in_features[-1]].stride

    @property
    def size_divisibility(self):
        return self._size_divisibility

    def forward(self, x):
        bottom_up = self.bottom_up(x)
        outputs = {}
        top = None
        for name, feature, lateral in reversed(
            list(zip(self.level_names, self.in_features, self.laterals))
        ):
            lateral_feature = lateral(bottom_up[feature])
            if top is not None:
                lateral_feature = lateral_feature + upsample_to(top, lateral_feature)
            top = lateral_feature
            if name in self.outputs:
                outputs[name] = self.outputs[name](top)
        return {name: outputs[name] for name in self._out_features}

    def output_shape(self):
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name],
                            stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_separable_fpn_backbone(cfg, input_shape: ShapeSpec):
    """``MODEL.SEPARABLE_FPN.BOTTOM_UP`` (a ``BACKBONE_REGISTRY`` name, e.g.
    "build_mobilenet_v2_backbone" or "build_efficientnet_lite_backbone") + ``SeparableFPN``."""
    fcfg = cfg.MODEL.SEPARABLE_FPN
    bottom_up = BACKBONE_REGISTRY.get(fcfg.BOTTOM_UP)(cfg, input_shape)
    return SeparableFPN(
        bottom_up,
        in_features=fcfg.IN_FEATURES,
        out_channels=fcfg.OUT_CHANNELS,
        out_features=fcfg.OUT_FEATURES,
        norm=fcfg.NORM,
    )
