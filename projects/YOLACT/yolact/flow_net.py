"""YolactEdge's FlowNetMini (Liu et al., ICRA 2021, Sec. III-B "FeatFlowNet"): the optical flow
from the current frame to the keyframe, estimated from the two frames' C3 FPN laterals, with the
reference's feature compensation.

    each lateral -> 3x3 conv to ``reduced_channels`` + LeakyReLU(0.1); the two concatenated
    (current first)
    -> encoder: E, 2E, 4E channels at strides 8, 16, 32 (each two 3x3 conv + LeakyReLU)
    -> coarse to fine: the stride-32 prediction, then stride 16 from the stride-16 encoding, the
       upsampled stride-32 features and the upsampled stride-32 flow, then (in training, or when
       P3 is warped) stride 8 alike.

Each prediction is a flow (2 channels, 3x3 conv without bias) in the reference's units (grid_sample
coordinates times 8, ``flow_to_pixels``) and a per-channel scale (1x1 conv, bias initialised to 1)
and bias (1x1 conv, bias 0) applied to the warped features.
"""
from itertools import chain
from typing import List, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FlowNetMini", "FlowPrediction", "flow_to_pixels"]


def flow_to_pixels(flow: torch.Tensor) -> torch.Tensor:
    """A flow in the reference's units (added to grid_sample's align_corners=True coordinates
    after division by 8) in pixels of its map: ``flow * (side - 1) / 16`` per axis."""
    height, width = flow.shape[-2:]
    scale = flow.new_tensor([(width - 1) / 16.0, (height - 1) / 16.0]).view(1, 2, 1, 1)
    return flow * scale


def _conv_lrelu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                         nn.LeakyReLU(0.1, inplace=True))


class FlowPrediction(NamedTuple):
    flow: torch.Tensor  # (N, 2, h, w), reference units
    scale: torch.Tensor  # (N, C, h, w), multiplies the warped features
    bias: torch.Tensor  # (N, C, h, w), added after


class FlowHead(nn.Module):
    """One scale's flow, scale and bias from the same features."""

    def __init__(self, in_channels: int, feature_channels: int):
        super().__init__()
        self.flow = nn.Conv2d(in_channels, 2, 3, padding=1, bias=False)
        self.scale = nn.Conv2d(in_channels, feature_channels, 1)
        self.bias = nn.Conv2d(in_channels, feature_channels, 1)
        for conv in (self.flow, self.scale, self.bias):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in")
        nn.init.ones_(self.scale.bias)
        nn.init.zeros_(self.bias.bias)

    def forward(self, x: torch.Tensor) -> FlowPrediction:
        return FlowPrediction(self.flow(x), self.scale(x), self.bias(x))


class FlowNetMini(nn.Module):
    """``forward(current, keyframe)`` (the two frames' C3 laterals, FPN channels) -> the
    predictions finest first: strides 8 (when ``finest``), 16, 32 relative to the input."""

    def __init__(self, feature_channels: int, reduced_channels: int = 64,
                 encoder_channels: int = 64):
        super().__init__()
        e = encoder_channels
        self.reduce = _conv_lrelu(feature_channels, reduced_channels)
        self.encoder1 = nn.Sequential(_conv_lrelu(2 * reduced_channels, e), _conv_lrelu(e, e))
        self.encoder2 = nn.Sequential(_conv_lrelu(e, 2 * e, 2), _conv_lrelu(2 * e, 2 * e))
        self.encoder3 = nn.Sequential(_conv_lrelu(2 * e, 4 * e, 2), _conv_lrelu(4 * e, 4 * e))
        self.head3 = FlowHead(4 * e, feature_channels)
        self.head2 = FlowHead(4 * e + 2, feature_channels)
        self.head1 = FlowHead(2 * e + 2, feature_channels)
        self.up_features3 = nn.Conv2d(4 * e, 2 * e, 3, padding=1, bias=False)
        self.up_flow3 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.up_features2 = nn.Conv2d(4 * e + 2, e, 3, padding=1, bias=False)
        self.up_flow2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        for m in chain(self.reduce.modules(), self.encoder1.modules(), self.encoder2.modules(),
                       self.encoder3.modules()):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, 0.1, mode="fan_in")
                nn.init.zeros_(m.bias)

    @staticmethod
    def _refine(coarse: torch.Tensor, flow: torch.Tensor, up_features: nn.Module,
                up_flow: nn.Module, encoded: torch.Tensor) -> torch.Tensor:
        """The next finer scale's input: its encoding, the coarser features and flow upsampled
        (bilinear) and each through a 3x3 conv."""
        size = encoded.shape[-2:]
        features = up_features(F.interpolate(coarse, size=size, mode="bilinear",
                                             align_corners=False))
        flow = up_flow(F.interpolate(flow, size=size, mode="bilinear", align_corners=False))
        return torch.cat((encoded, features, flow), dim=1)

    def forward(self, current: torch.Tensor, keyframe: torch.Tensor, finest: bool = False
                ) -> List[FlowPrediction]:
        x = torch.cat((self.reduce(current), self.reduce(keyframe)), dim=1)
        encoded1 = self.encoder1(x)
        encoded2 = self.encoder2(encoded1)
        encoded3 = self.encoder3(encoded2)
        stride32 = self.head3(encoded3)
        refined2 = self._refine(encoded3, stride32.flow, self.up_features3, self.up_flow3,
                                encoded2)
        stride16 = self.head2(refined2)
        predictions = [stride16, stride32]
        if finest:
            refined1 = self._refine(refined2, stride16.flow, self.up_features2, self.up_flow2,
                                    encoded1)
            predictions.insert(0, self.head1(refined1))
        return predictions
