"""Does an exported pipeline give the PyTorch model's instances? (Issue bar: the same instances,
mask IoU >= 0.99, scores within 1e-4.)"""
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Parity", "compare_outputs"]


@dataclass
class Parity:
    same_instances: bool  # same count, classes and order
    num_instances: int
    max_score_diff: float
    max_box_diff: float  # pixels
    min_mask_iou: float

    def ok(self, score_tol=1e-4, min_iou=0.99) -> bool:
        return (self.same_instances and self.max_score_diff <= score_tol
                and self.min_mask_iou >= min_iou)


def _mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(bool), b.reshape(len(b), -1).astype(bool)
    union = (a | b).sum(axis=1)
    return np.where(union > 0, (a & b).sum(axis=1) / np.maximum(union, 1), 1.0)


def compare_outputs(torch_outputs, onnx_outputs) -> Parity:
    """``torch_outputs`` and ``onnx_outputs``: (boxes, scores, classes, masks) of one image from
    ``FixedSizePipeline`` and from ONNX Runtime."""
    t = [x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in torch_outputs]
    o = [np.asarray(x) for x in onnx_outputs]
    same = len(t[1]) == len(o[1]) and np.array_equal(t[2], o[2])
    if not same or len(t[1]) == 0:
        return Parity(same, len(o[1]), 0.0 if same else float("inf"),
                      0.0 if same else float("inf"), 1.0 if same else 0.0)
    return Parity(
        same_instances=True,
        num_instances=len(o[1]),
        max_score_diff=float(np.abs(t[1] - o[1]).max()),
        max_box_diff=float(np.abs(t[0] - o[0]).max()),
        min_mask_iou=float(_mask_ious(t[3], o[3]).min()),
    )
