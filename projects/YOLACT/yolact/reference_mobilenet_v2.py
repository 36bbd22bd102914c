"""YolactEdge's MobileNetV2 (WisconsinAIVision/yolact_edge ``MobileNetV2Backbone``, YOLACT on its
``selected_layers [3, 4, 6]``) + YOLACT's FPN, so that its published checkpoint loads.

The bottom-up network is torchvision's ``mobilenet_v2().features`` (whose parameter names are the
reference's: ``<block>.conv.<i>...``) regrouped so that res3, res4, res5 end where the reference
taps: 32 channels at stride 8, 64 at 16 and 160 at 32. rtinst's MobileNetV2 splits at the
stride-2 blocks instead (res4 ends at 96 channels, res5 at 320). The last two blocks (320 and
1280 channels, the reference's layers 7 and 8) are left out: YOLACT reads neither.
"""
import torchvision
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from rtinst.modeling.backbone.mobilenet_v2 import mobilenet_v2_from_config
from rtinst.modeling.backbone.pretrained import convert_norm
from rtinst.modeling.backbone.staged import StagedBackbone

from .fpn import YOLACTFPN

__all__ = ["STAGES", "ReferenceMobileNetV2", "build_yolact_edge_mobilenet_v2_fpn_backbone"]

# (name, first and last + 1 index in torchvision's features, stride)
STAGES = (("stem", 0, 2, 2), ("res2", 2, 4, 4), ("res3", 4, 7, 8), ("res4", 7, 11, 16),
          ("res5", 11, 17, 32))


class ReferenceMobileNetV2(StagedBackbone):
    """Bottom-up MobileNetV2 returning any of res2..res5 (24/32/64/160 channels)."""

    def __init__(self, out_features=("res3", "res4", "res5"), norm="FrozenBN", freeze_at=0,
                 pretrained_state_dict=None):
        super().__init__(out_features)
        unknown = set(out_features) - {name for name, *_ in STAGES[1:]}
        if unknown:
            raise ValueError(f"MobileNetV2 has no output features {sorted(unknown)}")
        model = torchvision.models.mobilenet_v2()
        if pretrained_state_dict is not None:
            model.load_state_dict(pretrained_state_dict)
        features = list(convert_norm(model.features, norm, "MODEL.MOBILENET_V2.NORM"))
        for name, start, end, stride in STAGES:
            blocks = features[start:end]
            self.add_stage(name, nn.Sequential(*blocks), stride, blocks[-1].out_channels)
        self.freeze(freeze_at)


@BACKBONE_REGISTRY.register()
def build_yolact_edge_mobilenet_v2_fpn_backbone(cfg, input_shape: ShapeSpec):
    """``ReferenceMobileNetV2`` (``MODEL.MOBILENET_V2.*``) + YOLACT's FPN."""
    bottom_up = mobilenet_v2_from_config(cfg, input_shape, ReferenceMobileNetV2)
    return YOLACTFPN(bottom_up, cfg.MODEL.FPN.IN_FEATURES, cfg.MODEL.FPN.OUT_CHANNELS,
                     cfg.MODEL.YOLACT.FPN_EXTRA_LEVELS)
