"""YOLACT++'s fast mask re-scoring network (Sec. 3.1, Fig. 3 of the TPAMI paper): the cropped
predicted mask (at prototype resolution, not thresholded) goes through six convolutions with
ReLU -- five 3x3 stride-2 ones without padding and a 1x1 one to C channels -- and a global max
pool, giving the mask's IoU with its object for each class. At inference a detection's score
becomes its class confidence times the predicted IoU of its class."""
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MaskIoUHead", "rescore"]


class MaskIoUHead(nn.Module):
    """(P, 1, H, W) mask probabilities -> (P, C) predicted mask IoUs."""

    def __init__(self, num_classes: int, conv_dims: Sequence[int] = (8, 16, 32, 64, 128)):
        super().__init__()
        layers, channels = [], 1
        for dim in conv_dims:
            layers += [nn.Conv2d(channels, dim, 3, stride=2), nn.ReLU(inplace=True)]
            channels = dim
        layers += [nn.Conv2d(channels, num_classes, 1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        # the smallest input the unpadded stride-2 convs leave a pixel of: 3 -> 7 -> 15 -> ...
        self.min_size = 1
        for _ in conv_dims:
            self.min_size = 2 * self.min_size + 1
        for layer in self.convs:
            if isinstance(layer, nn.Conv2d):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks smaller than ``min_size`` (prototypes of inputs under ~250 px) are zero-padded
        at the bottom / right to it, so that the head works on any input size."""
        height, width = masks.shape[-2:]
        if height < self.min_size or width < self.min_size:
            masks = F.pad(masks, (0, max(self.min_size - width, 0),
                                  0, max(self.min_size - height, 0)))
        x = self.convs(masks)
        return F.adaptive_max_pool2d(x, 1).flatten(1)


def rescore(head: MaskIoUHead, masks: torch.Tensor, classes: torch.Tensor,
            scores: torch.Tensor) -> torch.Tensor:
    """``scores`` times the IoU ``head`` predicts for each (P, H, W) mask at its class."""
    predicted = head(masks[:, None])  # (no branch on P = 0: a traced graph would keep it)
    return scores * predicted.gather(1, classes[:, None].long())[:, 0]
