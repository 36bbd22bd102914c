"""VoVNet and VoVNetV2 (CenterMask, Lee & Park, CVPR 2020, Sec. 2.5) as Detectron2 backbones.

A stem of three 3x3 conv-norm-ReLU (strides 2, 1, 2) is followed by stage2..stage5 (strides 4-32;
stages 3-5 start with a 3x3 stride-2 max-pool) made of One-Shot Aggregation (OSA) modules
(Fig. 3a): consecutive 3x3 convs whose outputs are concatenated once, with the module input, and
fused by a 1x1 conv. VoVNetV2 adds to each OSA module
  * effective Squeeze-Excitation (eSE, Eq. 6-7, Fig. 3c): X * hsigmoid(W_C(GAP(X))) with a single
    C->C fully-connected layer and hsigmoid(x) = relu6(x + 3) / 6;
  * an identity residual (Fig. 3b), on every module of a stage but the first (whose input has
    another width and resolution).

``MODEL.VOVNET.CONV_BODY`` names the network: "V-19", "V-39", "V-57", "V-99", the lite "V-19-slim",
"V-19-dw", "V-19-slim-dw" (depth-wise 3x3 convs) are VoVNetV1 (neither eSE nor residual); the
same names with the suffix "-eSE" (e.g. "V-39-eSE") are VoVNetV2 (both), as in centermask2.
Widths and depths are centermask2's stage specs, and the parameter names are those of its
checkpoints (e.g. ``stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight``): the conv/norm/ReLU children
are registered under names containing "/", which ``nn.Module.add_module`` accepts (it only rejects
"." and ""), so ``state_dict``, ``load_state_dict``, ``named_parameters`` and DDP use them as they
are, with no renaming hook. Table 4's parameter counts are checked in tests/test_vovnet.py.

Differences from centermask2: the V1 names (its ``_OSA_module`` always builds eSE and residual);
``MODEL.BACKBONE.FREEZE_AT`` acts as in Detectron2's ResNet (centermask2 also freezes the affine
parameters of every BatchNorm); convs get Detectron2's MSRA init; stages after the last of
``out_features`` are not built; GN on the slim widths (80, 112) uses 16 groups, not 32.

No pretrained VoVNet weights ship with rtinst: the backbone trains from scratch (MSRA init) or
from a checkpoint given in ``MODEL.WEIGHTS``.
"""
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Tuple

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import get_norm
from detectron2.modeling import BACKBONE_REGISTRY

from .fpn import build_fpn_with_top_levels, build_rcnn_fpn
from .pretrained import NORMS, group_norm, warn_frozen_norm_from_scratch
from .staged import StagedBackbone

__all__ = [
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

STAGE_NAMES = ("stem", "stage2", "stage3", "stage4", "stage5")


@dataclass(frozen=True)
class VoVNetSpec:
    """Widths and depths of a VoVNet; ``ese`` and ``residual`` switch on VoVNetV2's additions."""

    stem_channels: Tuple[int, int, int]
    conv_channels: Tuple[int, int, int, int]  # width of the 3x3 convs in stage2..stage5
    out_channels: Tuple[int, int, int, int]  # output of the 1x1 aggregation conv in stage2..5
    layers_per_module: int
    modules_per_stage: Tuple[int, int, int, int]
    depthwise: bool = False
    ese: bool = False
    residual: bool = False


_WIDE = dict(conv_channels=(128, 160, 192, 224), out_channels=(256, 512, 768, 1024))
_SLIM = dict(conv_channels=(64, 80, 96, 112), out_channels=(112, 256, 384, 512))
_V1_SPECS = {
    "V-19-slim-dw": VoVNetSpec((64, 64, 64), **_SLIM, layers_per_module=3,
                               modules_per_stage=(1, 1, 1, 1), depthwise=True),
    "V-19-dw": VoVNetSpec((64, 64, 64), **_WIDE, layers_per_module=3,
                          modules_per_stage=(1, 1, 1, 1), depthwise=True),
    "V-19-slim": VoVNetSpec((64, 64, 128), **_SLIM, layers_per_module=3,
                            modules_per_stage=(1, 1, 1, 1)),
    "V-19": VoVNetSpec((64, 64, 128), **_WIDE, layers_per_module=3, modules_per_stage=(1, 1, 1, 1)),
    "V-39": VoVNetSpec((64, 64, 128), **_WIDE, layers_per_module=5, modules_per_stage=(1, 1, 2, 2)),
    "V-57": VoVNetSpec((64, 64, 128), **_WIDE, layers_per_module=5, modules_per_stage=(1, 1, 4, 3)),
    "V-99": VoVNetSpec((64, 64, 128), **_WIDE, layers_per_module=5, modules_per_stage=(1, 3, 9, 3)),
}
VOVNET_SPECS = {
    **_V1_SPECS,
    **{f"{name}-eSE": replace(spec, ese=True, residual=True) for name, spec in _V1_SPECS.items()},
}


def vovnet_spec(conv_body: str) -> VoVNetSpec:
    """The spec of a ``MODEL.VOVNET.CONV_BODY`` name."""
    if conv_body not in VOVNET_SPECS:
        raise ValueError(
            f"MODEL.VOVNET.CONV_BODY must be one of {list(VOVNET_SPECS)}, got {conv_body!r}"
        )
    return VOVNET_SPECS[conv_body]


def _norm(norm, channels):
    # Detectron2's GN has 32 groups; the slim widths (80, 112) need fewer
    return group_norm(channels) if norm == "GN" else get_norm(norm, channels)


def _conv_unit(prefix, in_channels, out_channels, norm, stride=1, kernel_size=3):
    """Named children of a conv-norm-ReLU: ``<prefix>/conv``, ``/norm`` and ``/relu``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
    return [
        (f"{prefix}/conv", conv),
        (f"{prefix}/norm", _norm(norm, out_channels)),
        (f"{prefix}/relu", nn.ReLU(inplace=True)),
    ]


def _depthwise_unit(prefix, in_channels, out_channels, norm, stride=1):
    """Named children of a depth-wise 3x3 conv then a 1x1 conv-norm-ReLU (the "-dw" bodies)."""
    return [
        (f"{prefix}/dw_conv3x3", nn.Conv2d(
            in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False)),
        (f"{prefix}/pw_conv1x1", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
        (f"{prefix}/pw_norm", _norm(norm, out_channels)),
        (f"{prefix}/pw_relu", nn.ReLU(inplace=True)),
    ]


class EffectiveSE(nn.Module):
    """eSE (Eq. 6-7): channel attention hsigmoid(W_C(GAP(X))) from one C->C FC, times X."""

    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x):
        attention = F.relu6(self.fc(x.mean(dim=(2, 3), keepdim=True)) + 3.0) / 6.0
        return x * attention


class OSAModule(nn.Module):
    """One-Shot Aggregation (Fig. 3): ``num_layers`` consecutive 3x3 convs, the input and all their
    outputs concatenated and fused by a 1x1 conv; then optional eSE and identity residual."""

    def __init__(self, name, in_channels, conv_channels, out_channels, num_layers, norm,
                 ese=False, residual=False, depthwise=False):
        super().__init__()
        if residual and in_channels != out_channels:
            raise ValueError(f"{name}: a residual needs in_channels == out_channels")
        self.residual = residual
        channels = in_channels
        self.conv_reduction = None
        if depthwise and in_channels != conv_channels:
            self.conv_reduction = nn.Sequential(OrderedDict(
                _conv_unit(f"{name}_reduction_0", in_channels, conv_channels, norm, kernel_size=1)
            ))
            channels = conv_channels
        unit = _depthwise_unit if depthwise else _conv_unit
        self.layers = nn.ModuleList()
        for index in range(num_layers):
            self.layers.append(nn.Sequential(OrderedDict(
                unit(f"{name}_{index}", channels, conv_channels, norm)
            )))
            channels = conv_channels
        self.concat = nn.Sequential(OrderedDict(_conv_unit(
            f"{name}_concat", in_channels + num_layers * conv_channels, out_channels, norm,
            kernel_size=1,
        )))
        self.ese = EffectiveSE(out_channels) if ese else None

    def forward(self, x):
        features = [x]
        y = x if self.conv_reduction is None else self.conv_reduction(x)
        for layer in self.layers:
            y = layer(y)
            features.append(y)
        y = self.concat(torch.cat(features, dim=1))
        if self.ese is not None:
            y = self.ese(y)
        return y + x if self.residual else y


class VoVNet(StagedBackbone):
    """Bottom-up VoVNet returning any of stem, stage2..stage5 (strides 4, 4, 8, 16, 32)."""

    def __init__(self, spec: VoVNetSpec, out_features=("stage2", "stage3", "stage4", "stage5"),
                 norm="FrozenBN", freeze_at=0, in_channels=3):
        """
        Args:
            spec: widths, depths and V1/V2 switches (``vovnet_spec(conv_body)``).
            out_features: names to return, among "stem", "stage2".."stage5".
            norm: "FrozenBN", "BN", "SyncBN" or "GN".
            freeze_at: as Detectron2's ResNet: 1 freezes the stem, 2 the stem and stage2, ...
                (requires_grad False and BatchNorm turned into FrozenBatchNorm2d).
            in_channels: channels of the input image.
        """
        super().__init__(out_features)
        if norm not in NORMS:
            raise ValueError(f"MODEL.VOVNET.NORM must be one of {list(NORMS)}, got {norm!r}")
        unknown = set(out_features) - set(STAGE_NAMES)
        if unknown:
            raise ValueError(f"VoVNet has no output features {sorted(unknown)}")

        stem, unit = spec.stem_channels, _depthwise_unit if spec.depthwise else _conv_unit
        self.add_stage("stem", nn.Sequential(OrderedDict(
            _conv_unit("stem_1", in_channels, stem[0], norm, stride=2)
            + unit("stem_2", stem[0], stem[1], norm)
            + unit("stem_3", stem[1], stem[2], norm, stride=2)
        )), stride=4, channels=stem[2])
        channels, stride = stem[2], 4

        last = max(STAGE_NAMES.index(name) for name in out_features)
        for index, name in enumerate(STAGE_NAMES[1 : last + 1]):
            stage = nn.Sequential()
            if index > 0:
                stage.add_module("pool", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
                stride *= 2
            for number in range(1, spec.modules_per_stage[index] + 1):
                module_name = f"OSA{index + 2}_{number}"
                stage.add_module(module_name, OSAModule(
                    module_name, channels, spec.conv_channels[index], spec.out_channels[index],
                    spec.layers_per_module, norm, ese=spec.ese,
                    residual=spec.residual and number > 1, depthwise=spec.depthwise,
                ))
                channels = spec.out_channels[index]
            self.add_stage(name, stage, stride=stride, channels=channels)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                weight_init.c2_msra_fill(module)
        self.freeze(freeze_at)


@BACKBONE_REGISTRY.register()
def build_vovnet_backbone(cfg, input_shape):
    """VoVNet from ``MODEL.VOVNET.*`` and ``MODEL.BACKBONE.FREEZE_AT``."""
    vcfg = cfg.MODEL.VOVNET
    backbone = VoVNet(
        vovnet_spec(vcfg.CONV_BODY),
        out_features=vcfg.OUT_FEATURES,
        norm=vcfg.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        in_channels=input_shape.channels,
    )
    warn_frozen_norm_from_scratch(backbone, vcfg.NORM, "MODEL.VOVNET.NORM", cfg.MODEL.WEIGHTS)
    return backbone


@BACKBONE_REGISTRY.register()
def build_vovnet_fpn_backbone(cfg, input_shape):
    """VoVNet + Detectron2's standard FPN (P2-P5 + max-pooled P6), for R-CNN models."""
    return build_rcnn_fpn(cfg, build_vovnet_backbone(cfg, input_shape))


@BACKBONE_REGISTRY.register()
def build_fcos_vovnet_fpn_backbone(cfg, input_shape):
    """VoVNet + FPN + FCOS top levels (P3-P7 with ``MODEL.FCOS.TOP_LEVELS`` 2): CenterMask's."""
    return build_fpn_with_top_levels(cfg, build_vovnet_backbone(cfg, input_shape))
