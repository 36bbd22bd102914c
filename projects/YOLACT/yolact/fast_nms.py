"""Non-maximum suppression for YOLACT (Sec. 3.4).

Fast NMS: for each class, the top-k detections by score, their pairwise IoU matrix X (c, n, n)
with its lower triangle and diagonal zeroed, and K_kj = max_i X_kij; a detection is kept when
K <= t. A detection may thus be suppressed by one that is itself suppressed, which standard NMS
would not do: slightly fewer detections, all in a few matrix operations. Also the reference's
cross-class variant (one IoU matrix over every candidate's best class) and standard per-class NMS
(torchvision's ``batched_nms``). Each returns (indices into the candidates, classes, scores) of
the kept detections, best first, at most ``max_detections``.
"""
from typing import Tuple

import torch
from torch.nn import functional as F
from torchvision.ops import batched_nms, box_iou

__all__ = ["NMS_TYPES", "cross_class_fast_nms", "fast_nms", "standard_nms", "suppress",
           "upper_iou_max"]

Kept = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _best(indices: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor,
          max_detections: int) -> Kept:
    scores, order = scores.sort(descending=True)
    order, scores = order[:max_detections], scores[:max_detections]
    return indices[order], classes[order], scores


def upper_iou_max(boxes: torch.Tensor) -> torch.Tensor:
    """K of Fast NMS for (c, n, 4) boxes sorted best first: (c, n), for each box the highest IoU
    with a better box of its row (0 for the first). Computed coordinate by coordinate, so that
    the largest temporaries are (c, n, n)."""
    x1, y1, x2, y2 = boxes.unbind(dim=-1)
    area = (x2 - x1) * (y2 - y1)
    inter = ((torch.minimum(x2[:, :, None], x2[:, None, :]) -
              torch.maximum(x1[:, :, None], x1[:, None, :])).clamp(min=0) *
             (torch.minimum(y2[:, :, None], y2[:, None, :]) -
              torch.maximum(y1[:, :, None], y1[:, None, :])).clamp(min=0))
    iou = inter / (area[:, :, None] + area[:, None, :] - inter)
    return _column_max(iou.triu(diagonal=1), dim=1)


def _column_max(upper: torch.Tensor, dim: int) -> torch.Tensor:
    """``upper.amax(dim)``, also when that dimension is empty (no candidates): a zero row is
    added first."""
    pad = [0, 0] * (upper.dim() - 1 - dim) + [1, 0]
    return F.pad(upper, pad).amax(dim=dim)


def _kept(boxes, scores, indices, iou_threshold):
    """Fast NMS's kept (indices, classes, scores) of per-class sorted ``scores`` / ``indices``
    (c, m): each class's first m detections."""
    # (c, m, 4) by a 2-D gather: an ONNX Reshape would read a 0 (no candidates) as "keep"
    keep = upper_iou_max(boxes[indices]) <= iou_threshold
    classes = torch.arange(indices.shape[0], device=boxes.device)[:, None].expand_as(indices)
    return indices[keep], classes[keep], scores[keep]


def fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5,
             top_k: int = 200, max_detections: int = 100) -> Kept:
    """Fast NMS of (n, 4) candidate ``boxes`` with (c, n) per-class ``scores``.

    Outside a traced graph, the matrices are first built over each class's detections scoring
    at least the 2 * ``max_detections``-th best score overall: a detection is only suppressed by
    better ones of its class, all in there, so when at least ``max_detections`` of those kept
    score that much, they are the answer of the full (c, top_k, top_k) matrices (otherwise those
    are computed). On a CPU this is several times faster for the usual 80 classes.
    """
    scores, indices = scores.sort(dim=1, descending=True)
    indices, scores = indices[:, :top_k], scores[:, :top_k]
    if not torch.jit.is_tracing() and scores.numel() > 2 * max_detections:
        threshold = scores.reshape(-1).topk(2 * max_detections).values[-1]
        columns = int((scores >= threshold).sum(dim=1).max())
        if columns < scores.shape[1]:
            kept = _kept(boxes, scores[:, :columns], indices[:, :columns], iou_threshold)
            if int((kept[2] >= threshold).sum()) >= max_detections:
                return _best(*kept, max_detections)
    return _best(*_kept(boxes, scores, indices, iou_threshold), max_detections)


def cross_class_fast_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5,
                         top_k: int = 200, max_detections: int = 100) -> Kept:
    """Fast NMS over every candidate at once, each with its best class (the reference's
    ``cc_fast_nms``): one (top_k, top_k) IoU matrix instead of one per class."""
    best_scores, classes = scores.max(dim=0)
    best_scores, order = best_scores.sort(descending=True)
    order, best_scores = order[:top_k], best_scores[:top_k]
    iou = box_iou(boxes[order], boxes[order])
    keep = _column_max(iou.triu(diagonal=1), dim=0) <= iou_threshold
    return _best(order[keep], classes[order][keep], best_scores[keep], max_detections)


def standard_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.5,
                 top_k: int = 200, max_detections: int = 100, score_threshold: float = 0.05
                 ) -> Kept:
    """Greedy per-class NMS of the (class, candidate) pairs scoring above ``score_threshold``
    (the reference's ``traditional_nms``; ``top_k`` is unused, as there)."""
    classes, indices = torch.nonzero(scores > score_threshold, as_tuple=True)
    pair_scores = scores[classes, indices]
    keep = batched_nms(boxes[indices], pair_scores, classes, iou_threshold)
    return _best(indices[keep], classes[keep], pair_scores[keep], max_detections)


NMS_TYPES = {"fast": fast_nms, "cross_class_fast": cross_class_fast_nms,
             "standard": standard_nms}


def suppress(nms_type: str, boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
             top_k: int, max_detections: int, score_threshold: float) -> Kept:
    """The NMS named by ``MODEL.YOLACT.NMS_TYPE``."""
    if nms_type == "standard":
        return standard_nms(boxes, scores, iou_threshold, top_k, max_detections,
                            score_threshold)
    return NMS_TYPES[nms_type](boxes, scores, iou_threshold, top_k, max_detections)
