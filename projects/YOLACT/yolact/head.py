"""YOLACT's prediction head (Sec. 3.2, Fig. 4), shared across the FPN levels: one 3x3 conv with
ReLU, then three 3x3 convs predicting, for each of the A anchors of a location, 4 box deltas,
C + 1 class confidences (background first) and k mask coefficients squashed by tanh."""
from typing import List, Tuple

import torch
from torch import nn

from rtinst.modeling.layers import ConvNormAct

__all__ = ["YOLACTHead", "flatten_anchor_maps"]


def _xavier(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def flatten_anchor_maps(maps: List[torch.Tensor], channels: int) -> torch.Tensor:
    """Per-level (N, A * channels, H, W) maps as one (N, sum H * W * A, channels) tensor, in the
    anchors' order (row-major locations, then the anchors of a location)."""
    n = maps[0].shape[0]
    return torch.cat([m.permute(0, 2, 3, 1).reshape(n, -1, channels) for m in maps], dim=1)


class YOLACTHead(nn.Module):
    """The head; ``forward`` returns (box deltas, class logits, tanh coefficients), each
    (N, A, 4 / C + 1 / k) over all levels."""

    def __init__(self, in_channels: int, conv_dim: int, num_anchors: int, num_classes: int,
                 num_prototypes: int):
        """
        Args:
            num_anchors: anchors per location (the same on every level, as the head is shared).
            num_classes: C, foreground classes (the head predicts C + 1).
            num_prototypes: k.
        """
        super().__init__()
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes
        self.upfeature = ConvNormAct(in_channels, conv_dim, 3, init=_xavier)
        self.box_pred = _xavier(nn.Conv2d(conv_dim, num_anchors * 4, 3, padding=1))
        self.class_pred = _xavier(nn.Conv2d(conv_dim, num_anchors * (num_classes + 1), 3,
                                            padding=1))
        self.coefficient_pred = _xavier(nn.Conv2d(conv_dim, num_anchors * num_prototypes, 3,
                                                  padding=1))

    def forward(self, features: List[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, classes, coefficients = [], [], []
        for x in features:
            x = self.upfeature(x)
            boxes.append(self.box_pred(x))
            classes.append(self.class_pred(x))
            coefficients.append(self.coefficient_pred(x))
        return (
            flatten_anchor_maps(boxes, 4),
            flatten_anchor_maps(classes, self.num_classes + 1),
            torch.tanh(flatten_anchor_maps(coefficients, self.num_prototypes)),
        )
