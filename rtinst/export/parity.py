"""Does an exported pipeline give the PyTorch model's instances? ``compare_outputs``: the traced
pipeline against ONNX Runtime on the same canvas; ``compare_instances``: the ``Predictor``
against the ``ONNXPredictor`` on a photo, instances matched as sets (near-tied scores may come
out in either order)."""
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["InstanceParity", "Parity", "compare_instances", "compare_outputs", "mask_iou",
           "pair_instances"]


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


def mask_iou(a, b) -> float:
    """IoU of two masks (arrays or tensors, nonzero = inside; 1 when both are empty)."""
    a, b = np.asarray(a).astype(bool), np.asarray(b).astype(bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _pairs(expected, actual, score_tol):
    """The one pairing rule: ``expected`` and ``actual`` are (boxes, scores, classes) arrays;
    each expected instance, in decreasing score, takes the free actual one of its class with a
    score within ``score_tol`` and the closest box (equal scores, e.g. of identical-looking
    objects, may come out of top-k in either order). (pairs (i, j), unpaired expected i)."""
    (e_boxes, e_scores, e_classes), (a_boxes, a_scores, a_classes) = expected, actual
    free, pairs, unpaired = set(range(len(a_scores))), [], []
    for i in np.argsort(-np.asarray(e_scores), kind="stable"):
        candidates = [j for j in free if a_classes[j] == e_classes[i]
                      and abs(a_scores[j] - e_scores[i]) <= score_tol]
        if not candidates:
            unpaired.append(int(i))
            continue
        j = min(candidates, key=lambda j: np.abs(a_boxes[j] - e_boxes[i]).max())
        free.remove(j)
        pairs.append((int(i), j))
    return pairs, unpaired


def _fields(instances):
    return (instances.pred_boxes.tensor.numpy(), instances.scores.numpy(),
            instances.pred_classes.numpy())


def pair_instances(expected, actual, score_tol=1e-3):
    """(i, j) pairs of two ``Instances`` of one image (e.g. ``Predictor`` and
    ``ONNXPredictor``, or two PyTorch paths) by ``compare_instances``' rule; instances without a
    partner are in no pair."""
    return _pairs(_fields(expected), _fields(actual), score_tol)[0]


def compare_outputs(torch_outputs, onnx_outputs, score_tol=1e-3) -> Parity:
    """``torch_outputs`` and ``onnx_outputs``: (boxes, scores, classes, masks) of one image from
    ``FixedSizePipeline`` and from ONNX Runtime. Instances are paired by class, score (within
    ``score_tol``) and box; the differences are measured between partners."""
    t = [x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in torch_outputs]
    o = [np.asarray(x) for x in onnx_outputs]
    pairs, unpaired = _pairs(t[:3], o[:3], score_tol)
    pairs = None if unpaired or len(t[1]) != len(o[1]) else pairs
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
        min_mask_iou=min(mask_iou(t[3][a], o[3][b]) for a, b in pairs),
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
    of its class with a score within ``score_tol`` and the closest box (``pair_instances``)."""
    expected_fields, actual_fields = _fields(expected), _fields(actual)
    pairs, unpaired = _pairs(expected_fields, actual_fields, score_tol)
    (e_boxes, e_scores, _), (a_boxes, a_scores, _) = expected_fields, actual_fields
    masks = expected.has("pred_masks") and actual.has("pred_masks")
    score_diff, box_diff, min_iou = 0.0, 0.0, 1.0
    for i, j in pairs:
        score_diff = max(score_diff, float(abs(a_scores[j] - e_scores[i])))
        box_diff = max(box_diff, float(np.abs(a_boxes[j] - e_boxes[i]).max()))
        if masks:
            min_iou = min(min_iou, mask_iou(expected.pred_masks[i].numpy(),
                                            actual.pred_masks[j].numpy()))
    paired_actual = {j for _, j in pairs}
    unmatched = [float(e_scores[i]) for i in unpaired]
    unmatched += [float(a_scores[j]) for j in range(len(actual)) if j not in paired_actual]
    return InstanceParity(len(expected), score_diff, box_diff, min_iou,
                          sorted(unmatched, reverse=True))
