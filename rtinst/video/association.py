"""The default association of the online tracker: each frame's detections are matched to the
live tracks by the Hungarian algorithm on mask IoU (box IoU for a model without masks) with the
track's last seen mask as the prior (no motion model), preferring pairs of one class; what is
left, by the distance to the track's last box (objects reappearing after an occlusion).

A method with its own association (MobileInst: kernel similarity; YolactEdge: keyframe
features) registers it under a name (``rtinst.register_method(track_associations=...)``) and
``MODEL.TRACKER.ASSOCIATION`` chooses it; it gets the same ``(tracks, detections)`` and returns
``(detection index, track index)`` pairs. Each track keeps its last detection with every field
the model put in it, e.g. an embedding.
"""
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.structures import Boxes, Instances, pairwise_iou

from ..modeling.matcher import linear_assignment

ASSOCIATION_MAX_SIDE = 320  # masks are compared at most this large (area-downsampled)
FORBIDDEN = 1e6  # the cost of a pair that must not match


def _comparable_masks(masks):
    """Float masks (N, H, W), area-downsampled so that the longer side is at most
    ``ASSOCIATION_MAX_SIDE`` (the IoU of large masks hardly changes; the cost does)."""
    masks = masks.float()
    longer = max(masks.shape[-2:])
    if longer > ASSOCIATION_MAX_SIDE and len(masks):
        size = [max(1, round(s * ASSOCIATION_MAX_SIDE / longer)) for s in masks.shape[-2:]]
        masks = F.interpolate(masks[:, None], size=size, mode="area")[:, 0]
    return masks.flatten(1)


def mask_iou(masks_a, masks_b):
    """IoU matrix (N, M) of two sets of masks of one image size."""
    a, b = _comparable_masks(masks_a), _comparable_masks(masks_b)
    intersection = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1e-9), torch.zeros_like(union))


def overlaps(detections: Instances, previous: Instances):
    """IoU (N, M) of the detections with the tracks' last detections: of their masks when both
    have them, else of their boxes."""
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


def _hungarian(cost, allowed):
    """The minimum-cost pairs among the allowed ones costing less than ``FORBIDDEN``, as (row,
    column) index pairs."""
    allowed = allowed & (cost < FORBIDDEN)
    rows, cols = linear_assignment(np.where(allowed, cost, np.inf), forbidden_cost=FORBIDDEN)
    return list(zip(rows.tolist(), cols.tolist()))


class MaskIoUHungarian:
    """``MODEL.TRACKER.ASSOCIATION "MaskIoUHungarian"``, in two stages, each the minimum total
    cost over the allowed pairs, a pair of different classes costing ``class_mismatch_cost``
    more (class agreement as a preference, since a detection's class may flip between frames;
    ``FORBIDDEN`` or more makes it a rule):

    1. cost 1 - IoU with the track's last mask, for pairs overlapping at least ``min_iou``;
    2. for the detections and tracks left, cost the distance of the box centres over the larger
       box's size, for pairs closer than ``max_center_distance`` (0: no second stage): an object
       reappearing beside its last (partly hidden) mask after an occlusion, or whose visible part
       changed too much to overlap, continues its track.
    """

    @configurable
    def __init__(self, *, min_iou=0.1, max_center_distance=1.5, class_mismatch_cost=0.5):
        self.min_iou = min_iou
        self.max_center_distance = max_center_distance
        self.class_mismatch_cost = class_mismatch_cost

    @classmethod
    def from_config(cls, cfg):
        return {"min_iou": cfg.MODEL.TRACKER.MIN_IOU,
                "max_center_distance": cfg.MODEL.TRACKER.MAX_CENTER_DISTANCE,
                "class_mismatch_cost": cfg.MODEL.TRACKER.CLASS_MISMATCH_COST}

    def __call__(self, tracks, detections: Instances):
        """``(detection index, track index)`` pairs for the live ``tracks`` (``Track``)."""
        if not tracks or not len(detections):
            return []
        previous = Instances.cat([track.last for track in tracks])
        mismatch = np.zeros((len(detections), len(previous)))
        if detections.has("pred_classes"):
            mismatch = self.class_mismatch_cost * (
                detections.pred_classes.numpy()[:, None] != previous.pred_classes.numpy()[None, :]
            )
        iou = overlaps(detections, previous).numpy()
        matches = _hungarian(1.0 - iou + mismatch, iou >= self.min_iou)
        if self.max_center_distance > 0:
            left = np.ones_like(iou, dtype=bool)
            for r, c in matches:
                left[r, :] = left[:, c] = False
            distance = center_distances(detections, previous).numpy()
            matches += _hungarian(distance + mismatch, left & (distance < self.max_center_distance))
        return matches
