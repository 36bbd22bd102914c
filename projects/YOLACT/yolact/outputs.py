"""What YOLACT's network predicts for a batch (Sec. 3.1-3.2), in the reference's anchor order
(per level, row-major over locations, then the anchors of a location), so that the losses, the
inference and the ONNX pipeline read one structure."""
from typing import NamedTuple, Optional

import torch

__all__ = ["YOLACTOutputs"]


class YOLACTOutputs(NamedTuple):
    box_deltas: torch.Tensor  # (N, A, 4) Box2BoxTransform (10, 10, 5, 5) deltas from the anchors
    class_logits: torch.Tensor  # (N, A, C + 1), column 0 the background
    coefficients: torch.Tensor  # (N, A, K) mask coefficients, after tanh
    prototypes: torch.Tensor  # (N, K, Hp, Wp) prototypes, after ReLU
    semantic_logits: Optional[torch.Tensor] = None  # (N, C, H3, W3) on P3, training only
