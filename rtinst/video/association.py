"""The default association of the online tracker, ``MODEL.TRACKER.ASSOCIATION "MaskIoU"``: a
frame's detections are matched to tracks on the IoU of their masks (of their boxes for a model
without masks) with each track's *predicted* region (its last one moved by its motion,
``motion.py``), preferring pairs of one class; what is left, by the distance to the track's
predicted box (objects reappearing after an occlusion). ``MODEL.TRACKER.MATCHING`` picks the
assignment: the minimum total cost (Hungarian) or greedy, cheapest pair first (CTVIS, Ying et al.,
ICCV 2023, Sec. 4.4, finds greedy the better for VIS).

A method with its own association (MobileInst: kernel similarity; YolactEdge: keyframe
features) registers it under a name (``rtinst.register_method(track_associations=...)``) and
``MODEL.TRACKER.ASSOCIATION`` chooses it; it gets ``(tracks, detections)`` and returns
``(detection index, track index)`` pairs. Each track (``tracker.Track``) keeps its last detection
with its box, score, class, grid mask and the fields the association lists in its ``fields``
(e.g. an embedding; every field the model gave when it has no ``fields``), and its predicted
region.

Masks are compared on a coarse grid (``association_masks``: every ``stride``-th pixel, the
longer side at most ``ASSOCIATION_MAX_SIDE``), and only for pairs whose boxes overlap: the IoU of
two masks of a few hundred pixels moves by a few hundredths, the cost by a factor of the stride
squared.
"""
import math

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import Boxes, Instances, pairwise_iou

from ..modeling.matcher import linear_assignment

__all__ = ["MATCHINGS", "MaskIoU", "association_masks", "center_distances", "greedy_matching",
           "hungarian_matching", "mask_iou", "matching_by_name", "overlaps"]

ASSOCIATION_MAX_SIDE = 64  # masks are compared on a grid at most this long
FORBIDDEN = 1e6  # a class mismatch costing this much or more never matches


def association_stride(height, width):
    """The subsampling step of the association grid for frames of this size."""
    return max(1, math.ceil(max(height, width) / ASSOCIATION_MAX_SIDE))


def association_masks(masks, stride=None, rows=None):
    """Float masks (N, h, w): every ``stride``-th pixel of the (N, H, W) masks (by default the
    step of ``association_stride``), of the masks ``rows`` (an index; all by default)."""
    if stride is None:
        stride = association_stride(*masks.shape[-2:])
    grid = masks[:, ::stride, ::stride]
    return (grid if rows is None else grid[rows]).float()


def _mask_iou_of_grids(a, b):
    """IoU matrix (N, M) of two sets of grid masks (N, h, w), (M, h, w)."""
    a, b = a.flatten(1), b.flatten(1)
    intersection = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-9), torch.zeros_like(union))


def mask_iou(masks_a, masks_b):
    """IoU matrix (N, M) of two sets of masks of one image size (on the association grid)."""
    stride = association_stride(*masks_a.shape[-2:])
    return _mask_iou_of_grids(association_masks(masks_a, stride),
                              association_masks(masks_b, stride))


def _boxes_overlap(boxes_a, boxes_b):
    """(N, M) bool: whether the XYXY boxes intersect."""
    return ((torch.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
             > torch.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0]))
            & (torch.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
               > torch.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])))


def overlaps(detections: Instances, previous: Instances):
    """IoU (N, M) of ``detections`` with ``previous``: of their ``association_masks`` when both
    have them (computed only for the rows with a box overlapping some box of the other side),
    else of their masks, else of their boxes."""
    if detections.has("association_masks") and previous.has("association_masks"):
        iou = torch.zeros(len(detections), len(previous))
        touching = _boxes_overlap(detections.pred_boxes.tensor, previous.pred_boxes.tensor)
        rows, cols = touching.any(1).nonzero()[:, 0], touching.any(0).nonzero()[:, 0]
        if len(rows) and len(cols):
            iou[rows[:, None], cols] = _mask_iou_of_grids(
                detections.association_masks[rows], previous.association_masks[cols])
        return iou
    if detections.has("pred_masks") and previous.has("pred_masks"):
        return mask_iou(detections.pred_masks, previous.pred_masks)
    return pairwise_iou(Boxes(detections.pred_boxes.tensor), Boxes(previous.pred_boxes.tensor))


def center_distances(detections: Instances, previous: Instances):
    """(N, M) distance of the box centres, in units of the larger box's size (the square root
    of its area)."""
    a, b = detections.pred_boxes, previous.pred_boxes
    distance = torch.cdist(a.get_centers(), b.get_centers())
    size = torch.maximum(a.area()[:, None], b.area()[None, :]).clamp(min=1e-9).sqrt()
    return distance / size


def hungarian_matching(cost, allowed):
    """The minimum-cost pairs (row, column) among the ``allowed`` ones."""
    rows, cols = linear_assignment(np.where(allowed, cost, np.inf))
    return list(zip(rows.tolist(), cols.tolist()))


def greedy_matching(cost, allowed):
    """Pairs (row, column) taken cheapest first among the ``allowed`` ones, each row and column
    at most once."""
    rows, cols = np.nonzero(allowed)
    taken_rows, taken_cols, pairs = set(), set(), []
    for i in np.argsort(cost[rows, cols], kind="stable"):
        r, c = int(rows[i]), int(cols[i])
        if r not in taken_rows and c not in taken_cols:
            taken_rows.add(r), taken_cols.add(c), pairs.append((r, c))
    return sorted(pairs)


MATCHINGS = {"hungarian": hungarian_matching, "greedy": greedy_matching}


def matching_by_name(name):
    """The matching ``MODEL.TRACKER.MATCHING`` names; a ``ValueError`` naming the key and the
    known names for another."""
    if name not in MATCHINGS:
        raise ValueError(f"MODEL.TRACKER.MATCHING: '{name}' is not one of {sorted(MATCHINGS)}")
    return MATCHINGS[name]


class MaskIoU:
    """``MODEL.TRACKER.ASSOCIATION "MaskIoU"``, in two stages, each a matching
    (``MODEL.TRACKER.MATCHING``) over the allowed pairs, a pair of different classes costing
    ``class_mismatch_cost`` more (class agreement as a preference, since a detection's class may
    flip between frames; 1e6 or more makes it a rule):

    1. cost 1 - IoU with the track's predicted region, for pairs overlapping at least ``min_iou``;
    2. for the detections and tracks left, cost the distance of the box centres over the larger
       box's size, for pairs closer than ``max_center_distance`` (0: no second stage): an object
       reappearing beside its last (partly hidden) mask after an occlusion, or whose visible part
       changed too much to overlap, continues its track.
    """

    fields = ()  # the detection fields it reads besides boxes, scores, classes and masks

    @configurable
    def __init__(self, *, min_iou=0.1, max_center_distance=1.5, class_mismatch_cost=0.5,
                 matching="greedy"):
        self.min_iou = min_iou
        self.max_center_distance = max_center_distance
        self.class_mismatch_cost = class_mismatch_cost
        self.matching = matching_by_name(matching)

    @classmethod
    def from_config(cls, cfg):
        return {"min_iou": cfg.MODEL.TRACKER.MIN_IOU,
                "max_center_distance": cfg.MODEL.TRACKER.MAX_CENTER_DISTANCE,
                "class_mismatch_cost": cfg.MODEL.TRACKER.CLASS_MISMATCH_COST,
                "matching": cfg.MODEL.TRACKER.MATCHING.lower()}

    def mismatch(self, detections, previous):
        """(N, M) the class disagreement's cost of each pair."""
        if not detections.has("pred_classes") or not previous.has("pred_classes"):
            return np.zeros((len(detections), len(previous)))
        return self.class_mismatch_cost * (
            detections.pred_classes.numpy()[:, None] != previous.pred_classes.numpy()[None, :])

    def __call__(self, tracks, detections: Instances):
        """``(detection index, track index)`` pairs for the ``tracks`` (``Track``)."""
        if not tracks or not len(detections):
            return []
        predicted = Instances.cat([track.predicted for track in tracks])
        mismatch = self.mismatch(detections, predicted)
        iou = overlaps(detections, predicted).numpy()
        allowed = mismatch < FORBIDDEN
        matches = self.matching(1.0 - iou + mismatch, allowed & (iou >= self.min_iou))
        if self.max_center_distance > 0:
            left = allowed.copy()
            for r, c in matches:
                left[r, :] = left[:, c] = False
            if left.any():
                distance = center_distances(detections, predicted).numpy()
                matches += self.matching(distance + mismatch,
                                         left & (distance < self.max_center_distance))
        return matches
