"""YOLACT's anchor assignment (Sec. 3.1, SSD's matching with the reference's settings).

Each anchor takes the ground-truth box it overlaps most: positive at IoU >= 0.5, negative below
0.4, neutral (ignored) in between. Every ground truth is then forced onto one anchor of its own,
the pairs being fixed greedily, highest IoU first, so that no object goes untrained. Non-positive
anchors lying mostly inside a crowd box (intersection / anchor area > 0.7) become neutral.
"""
from typing import Optional, Tuple, Union

import torch

from detectron2.structures import Boxes, pairwise_ioa, pairwise_iou

__all__ = ["POSITIVE", "NEGATIVE", "NEUTRAL", "force_best_anchors", "match_anchors"]

POSITIVE, NEGATIVE, NEUTRAL = 1, 0, -1
FORCED_IOU = 2.0  # above any threshold: a forced anchor is always positive


def _as_boxes(boxes: Union[Boxes, torch.Tensor]) -> Boxes:
    return boxes if isinstance(boxes, Boxes) else Boxes(boxes)


def force_best_anchors(iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(anchor indices, ground-truth indices) of the forced pairs for a (G, A) IoU matrix.

    G rounds, as the reference's ``match`` loop (layers/box_utils.py): take the ground truth
    whose best remaining anchor has the highest IoU, pair it with that anchor, then remove both
    the ground truth's row and the anchor's column (set to -1). Ties go to the lowest index
    (torch.max). A ground truth whose anchors are all taken or not overlapped still gets one.
    """
    iou = iou.clone()
    num_gt = iou.shape[0]
    anchor_index = torch.empty(num_gt, dtype=torch.long, device=iou.device)
    gt_index = torch.empty(num_gt, dtype=torch.long, device=iou.device)
    for step in range(num_gt):
        best_iou, best_anchor = iou.max(dim=1)
        gt = best_iou.max(dim=0)[1]
        anchor = best_anchor[gt]
        iou[:, anchor] = -1
        iou[gt, :] = -1
        anchor_index[step], gt_index[step] = anchor, gt
    return anchor_index, gt_index


def _neutralise_crowds(state: torch.Tensor, anchors: Boxes, crowd_boxes: Boxes,
                       crowd_iou: float) -> torch.Tensor:
    """Non-positive anchors whose intersection with a crowd box exceeds ``crowd_iou`` of their
    own area become neutral (the reference's ``jaccard(priors, crowds, iscrowd=True)``)."""
    if len(crowd_boxes) == 0 or crowd_iou >= 1:
        return state
    crowd_overlap = pairwise_ioa(crowd_boxes, anchors).max(dim=0)[0]  # over anchor areas
    return state.masked_fill((state <= NEGATIVE) & (crowd_overlap > crowd_iou), NEUTRAL)


def match_anchors(anchors: Union[Boxes, torch.Tensor], gt_boxes: Union[Boxes, torch.Tensor],
                  crowd_boxes: Optional[Union[Boxes, torch.Tensor]] = None,
                  positive_iou: float = 0.5, negative_iou: float = 0.4, crowd_iou: float = 0.7
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(matched ground-truth index (A,) long, state (A,) long) for (A, 4) XYXY ``anchors`` and
    (G, 4) ``gt_boxes``: state 1 positive (IoU >= ``positive_iou`` or forced), 0 negative
    (IoU < ``negative_iou``), -1 neutral. With no ground truth every index is 0 and every anchor
    negative (but for the crowds)."""
    anchors, gt_boxes = _as_boxes(anchors), _as_boxes(gt_boxes)
    num_anchors = len(anchors)
    device = anchors.tensor.device
    if len(gt_boxes) == 0:
        matched = torch.zeros(num_anchors, dtype=torch.long, device=device)
        state = torch.full((num_anchors,), NEGATIVE, dtype=torch.long, device=device)
    else:
        iou = pairwise_iou(gt_boxes, anchors)  # (G, A)
        best_iou, matched = iou.max(dim=0)
        forced_anchor, forced_gt = force_best_anchors(iou)
        best_iou[forced_anchor] = FORCED_IOU
        matched[forced_anchor] = forced_gt
        state = torch.full_like(matched, POSITIVE)
        state[best_iou < positive_iou] = NEUTRAL
        state[best_iou < negative_iou] = NEGATIVE
    if crowd_boxes is not None:
        state = _neutralise_crowds(state, anchors, _as_boxes(crowd_boxes), crowd_iou)
    return matched, state
