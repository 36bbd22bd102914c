"""A bottom-up network made of named stages run in sequence (stem, res2, ..., res5), the layout
Detectron2's FPN expects; what MobileNetV2 and EfficientNet-Lite share."""
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import Backbone
from torch import nn

from ..freeze import freeze

__all__ = ["StagedBackbone"]


class StagedBackbone(Backbone):
    """Runs the stages added with ``add_stage`` in order and returns those in ``out_features``."""

    def __init__(self, out_features):
        super().__init__()
        self._out_features = list(out_features)
        self.stage_names = ()
        self._out_feature_strides, self._out_feature_channels = {}, {}

    def add_stage(self, name: str, stage: nn.Module, stride: int, channels: int):
        """Appends ``stage``, whose output has ``stride`` and ``channels``."""
        self.add_module(name, stage)
        self.stage_names += (name,)
        self._out_feature_strides[name] = stride
        self._out_feature_channels[name] = channels

    def freeze(self, freeze_at: int):
        """As Detectron2's ResNet: the first ``freeze_at`` stages (the stem counting as 1) get no
        gradient and their BatchNorm layers become FrozenBatchNorm2d. Returns self."""
        for name in self.stage_names[:freeze_at]:
            setattr(self, name, freeze(getattr(self, name)))
        return self

    def named_stages(self):
        """[(name, stage)] in the order forward runs them, the stem first."""
        return [(name, getattr(self, name)) for name in self.stage_names]

    def forward(self, x):
        outputs = {}
        for name, stage in self.named_stages():
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }
