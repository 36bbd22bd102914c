"""YOLACT's backbone (Sec. 3 / 6): a bottom-up network with an FPN on its last three stages, P3-P5
through a bilinear top-down path and a ReLU after each 3x3 output convolution, and P6, P7 by
stride-2 3x3 convolutions on P5's output (no ReLU), all with 256 channels.

YOLACT++ (Sec. 3.2, "Deformable Convolution with Intervals") makes every ``interval``-th
bottleneck of the ResNet stages ``MODEL.RESNETS.DEFORM_ON_PER_STAGE`` selects (counting from each
stage's first block) a modulated deformable one: Detectron2's ``DeformBottleneckBlock``, whose
``ModulatedDeformConv`` runs through torchvision's ``deform_conv2d`` (no compiled DCNv2).
"""
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone, build_resnet_backbone
from detectron2.modeling.backbone.resnet import DeformBottleneckBlock

from rtinst.modeling.backbone import build_mobilenet_v2_backbone

__all__ = ["YOLACTFPN", "deformable_block_indices", "build_yolact_resnet_fpn_backbone",
           "build_yolact_mobilenet_v2_fpn_backbone"]


def _xavier(conv: nn.Conv2d) -> nn.Conv2d:
    """The reference's initialisation of every non-backbone convolution."""
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class YOLACTFPN(Backbone):
    """FPN with outputs p3..p(3 + len(in_features) + extra_levels - 1)."""

    def __init__(self, bottom_up: Backbone, in_features: List[str], out_channels: int = 256,
                 extra_levels: int = 2):
        super().__init__()
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        shapes = bottom_up.output_shape()
        missing = [f for f in self.in_features if f not in shapes]
        if missing:
            raise ValueError(f"MODEL.FPN.IN_FEATURES {missing} are not outputs of the bottom-up "
                             f"network (it has {sorted(shapes)})")
        # finest first: lateral_convs[0] reads the finest input (the reference stores them
        # coarsest first)
        self.lateral_convs = nn.ModuleList(
            _xavier(nn.Conv2d(shapes[f].channels, out_channels, 1)) for f in self.in_features
        )
        self.output_convs = nn.ModuleList(
            _xavier(nn.Conv2d(out_channels, out_channels, 3, padding=1)) for _ in self.in_features
        )
        self.downsample_convs = nn.ModuleList(
            _xavier(nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1))
            for _ in range(extra_levels)
        )
        first_stride = shapes[self.in_features[0]].stride
        self._out_features = [f"p{i + 3}" for i in range(len(self.in_features) + extra_levels)]
        self._out_feature_strides = {
            name: first_stride * 2 ** i for i, name in enumerate(self._out_features)
        }
        self._out_feature_channels = {name: out_channels for name in self._out_features}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.output_levels(self.top_down(self.laterals(self.bottom_up(x))))

    def laterals(self, bottom_up: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        """The 1x1 lateral convolutions of the bottom-up features, finest first."""
        return [conv(bottom_up[f]) for conv, f in zip(self.lateral_convs, self.in_features)]

    def top_down(self, laterals: List[torch.Tensor]) -> List[torch.Tensor]:
        """The top-down sums before the 3x3 output convolutions (YolactEdge's "FPN phase 1"),
        finest first: each level's lateral plus the next coarser sum upsampled."""
        sums = [None] * len(laterals)
        for level in reversed(range(len(laterals))):
            coarser = sums[level + 1] if level + 1 < len(laterals) else None
            sums[level] = self.add_lateral(laterals[level], coarser)
        return sums

    @staticmethod
    def add_lateral(lateral: torch.Tensor, coarser: Optional[torch.Tensor]) -> torch.Tensor:
        """One top-down step: ``lateral`` plus ``coarser`` upsampled (bilinear) to its size."""
        if coarser is None:
            return lateral
        return lateral + F.interpolate(coarser, size=lateral.shape[-2:], mode="bilinear",
                                       align_corners=False)

    def output_levels(self, top_down: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The pyramid from the top-down sums ("FPN phase 2"): ReLU(3x3 conv) on each, then the
        stride-2 convolutions from the coarsest output."""
        outputs = [F.relu(conv(t)) for conv, t in zip(self.output_convs, top_down)]
        for conv in self.downsample_convs:
            outputs.append(conv(outputs[-1]))
        return dict(zip(self._out_features, outputs))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name],
                            stride=self._out_feature_strides[name])
            for name in self._out_features
        }


def deformable_block_indices(num_blocks: int, interval: int) -> List[int]:
    """The blocks of a deformable stage that are deformable: 0, interval, 2 * interval, ...
    (YOLACT++'s ResNet-101 "interval 3": blocks 0, 3 of C3, 0, 3, ..., 21 of C4, 0 of C5)."""
    if interval < 1:
        raise ValueError(f"MODEL.YOLACT.DEFORM_INTERVAL must be >= 1, got {interval}")
    return list(range(0, num_blocks, interval))


def _make_deformable(cfg, resnet, interval: int):
    """Replaces, in the stages with DEFORM_ON_PER_STAGE, the blocks of
    ``deformable_block_indices`` by modulated ``DeformBottleneckBlock``s of the same shape, whose
    deformable conv has a bias (zero at first) as the reference's DCNv2 (Detectron2 builds it
    without one)."""
    rcfg = cfg.MODEL.RESNETS
    for index, (name, deform_on) in enumerate(zip(["res2", "res3", "res4", "res5"],
                                                  rcfg.DEFORM_ON_PER_STAGE)):
        if not deform_on or not hasattr(resnet, name):
            continue
        stage = getattr(resnet, name)
        for b in deformable_block_indices(len(stage), interval):
            block = stage[b]
            stage[b] = DeformBottleneckBlock(
                block.in_channels, block.out_channels,
                bottleneck_channels=block.conv1.out_channels, stride=block.stride,
                num_groups=rcfg.NUM_GROUPS, norm=rcfg.NORM, stride_in_1x1=rcfg.STRIDE_IN_1X1,
                dilation=rcfg.RES5_DILATION if index == 3 else 1,
                deform_modulated=rcfg.DEFORM_MODULATED, deform_num_groups=rcfg.DEFORM_NUM_GROUPS,
            )
            if rcfg.DEFORM_MODULATED:  # (Detectron2's unmodulated DeformConv takes no bias)
                conv = stage[b].conv2
                conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
                conv.with_bias = True
    resnet.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)
    return resnet


@BACKBONE_REGISTRY.register()
def build_yolact_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's ResNet (``MODEL.RESNETS.*``, with YOLACT++'s interval deformable blocks)
    + YOLACT's FPN on ``MODEL.FPN.IN_FEATURES``."""
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False] * 4
    resnet = build_resnet_backbone(plain, input_shape)
    if any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE):
        _make_deformable(cfg, resnet, cfg.MODEL.YOLACT.DEFORM_INTERVAL)
    return YOLACTFPN(resnet, cfg.MODEL.FPN.IN_FEATURES, cfg.MODEL.FPN.OUT_CHANNELS,
                     cfg.MODEL.YOLACT.FPN_EXTRA_LEVELS)


@BACKBONE_REGISTRY.register()
def build_yolact_mobilenet_v2_fpn_backbone(cfg, input_shape: ShapeSpec):
    """rtinst's ImageNet MobileNetV2 (``MODEL.MOBILENET_V2.*``) + YOLACT's FPN."""
    return YOLACTFPN(build_mobilenet_v2_backbone(cfg, input_shape), cfg.MODEL.FPN.IN_FEATURES,
                     cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.YOLACT.FPN_EXTRA_LEVELS)
