"""Does an exported pipeline give the PyTorch model's instances? ``compare_outputs``: the traced
pipeline against ONNX Runtime on the same canvas; ``compare_instances``: the ``Predictor``
against the ``ONNXPredictor`` on a photo, instances matched as sets (near-tied scores may come
out in either order)."""
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InstanceParity", "Parity", "compare_instances", "compare_outputs"]


@dataclass
class Parity:
    same_instances: bool  # one-to-one: same count, each with a partner of its class and score
    num_instances: int
    max_score_diff: float
    max_box_diff: float  # pixels
    min_mask_iou: float

    def ok(self, score_tol=1e-4, min_iou=0.99) -> bool:
        return (self.same_instances and self.max_score_diff <= score_tol
                and self.min_mask_iou >= min_iou)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _match(t, o, score_tol):
    """Pairs (i, j) of PyTorch instance i and ONNX instance j of the same class, scores within
    ``score_tol`` and the closest boxes; None when some instance has no partner. (Equal scores,
    e.g. of identical-looking objects, may come out of top-k in either order.)"""
    free, pairs = set(range(len(o[1]))), []
    for i in range(len(t[1])):
        candidates = [j for j in free
                      if o[2][j] == t[2][i] and abs(o[1][j] - t[1][i]) <= score_tol]
        if not candidates:
            return None
        j = min(candidates, key=lambda j: np.abs(o[0][j] - t[0][i]).max())
        free.remove(j)
        pairs.append((i, j))
    return pairs


def compare_outputs(torch_outputs, onnx_outputs, score_tol=1e-3) -> Parity:
    """``torch_outputs`` and ``onnx_outputs``: (boxes, scores, classes, masks) of one image from
    ``FixedSizePipeline`` and from ONNX Runtime. Instances are paired by class, score (within
    ``score_tol``) and box; the differences are measured between partners."""
    t = [x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in torch_outputs]
    o = [np.asarray(x) for x in onnx_outputs]
    pairs = _match(t, o, score_tol) if len(t[1]) == len(o[1]) else None
    if not pairs:
        same = pairs is not None
        return Parity(same, len(o[1]), 0.0 if same else float("inf"),
                      0.0 if same else float("inf"), 1.0 if same else 0.0)
    i, j = np.array(pairs).T
    return Parity(
        same_instances=True,
        num_instances=len(o[1]),
        max_score_diff=float(np.abs(t[1][i] - o[1][j]).max()),
        max_box_diff=float(np.abs(t[0][i] - o[0][j]).max()),
        min_mask_iou=min(_mask_iou(t[3][a], o[3][b]) for a, b in pairs),
    )


@dataclass
class InstanceParity:
    """The worst differences between matched instances of one photo, and the scores of those
    either side left without a partner."""

    num_instances: int  # the Predictor's
    max_score_diff: float
    max_box_diff: float  # pixels of the photo
    min_mask_iou: float
    unmatched_scores: list

    def ok(self, score_tol=1e-3, box_tol=1.0, min_iou=0.98, unmatched_below=0.3) -> bool:
        """The export bar: partners within these tolerances, no unmatched instance scoring
        above ``unmatched_below``."""
        return (self.max_score_diff <= score_tol and self.max_box_diff <= box_tol
                and self.min_mask_iou >= min_iou
                and all(s <= unmatched_below for s in self.unmatched_scores))


def compare_instances(expected, actual, score_tol=1e-3) -> InstanceParity:
    """``expected`` and ``actual``: ``Instances`` of one photo (e.g. ``Predictor`` and
    ``ONNXPredictor``). Each expected instance, in decreasing score, takes the free actual one
    of its class with a score within ``score_tol`` and the closest box."""
    e_boxes, a_boxes = expected.pred_boxes.tensor.numpy(), actual.pred_boxes.tensor.numpy()
    e_scores, a_scores = expected.scores.numpy(), actual.scores.numpy()
    masks = expected.has("pred_masks") and actual.has("pred_masks")
    free, unmatched = set(range(len(actual))), []
    score_diff, box_diff, min_iou = 0.0, 0.0, 1.0
    for i in np.argsort(-e_scores, kind="stable"):
        candidates = [j for j in free if actual.pred_classes[j] == expected.pred_classes[i]
                      and abs(a_scores[j] - e_scores[i]) <= score_tol]
        if not candidates:
            unmatched.append(float(e_scores[i]))
            continue
        j = min(candidates, key=lambda j: np.abs(a_boxes[j] - e_boxes[i]).max())
        free.remove(j)
        score_diff = max(score_diff, float(abs(a_scores[j] - e_scores[i])))
        box_diff = max(box_diff, float(np.abs(a_boxes[j] - e_boxes[i]).max()))
        if masks:
            min_iou = min(min_iou, _mask_iou(expected.pred_masks[i].numpy(),
                                             actual.pred_masks[j].numpy()))
    unmatched += [float(a_scores[j]) for j in sorted(free)]
    return InstanceParity(len(expected), score_diff, box_diff, min_iou, sorted(unmatched,
                                                                              reverse=True))
