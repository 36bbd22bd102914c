"""NMS-free inference (Sec. 4.2, SparseInst's): each query is one candidate instance, scored
sqrt(p_class x objectness) with its best class; the top-k queries by score are selected, those
scoring at least the threshold kept, their masks sigmoid(K . X_mask) upsampled to the image and
thresholded, their boxes those of the masks.

Selection and mask making are apart so that a keyframe's selection (fixed size: k queries) can
be kept and reused on later frames (kernel reuse, Sec. 3.4), in PyTorch and in the exported
graphs alike; everything is plain tensor code, traced as it is into ONNX.
"""
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .mask_decoder import instance_masks

__all__ = ["Selection", "boxes_from_masks", "instances_from_kernels", "kept", "select_queries"]


class Selection(NamedTuple):
    """k selected queries of one image: ``scores`` (k,), ``classes`` (k,) int64, ``kernels``
    (k, D), highest score first."""

    scores: torch.Tensor
    classes: torch.Tensor
    kernels: torch.Tensor


def select_queries(logits, objectness, kernels, topk: int) -> Selection:
    """The ``topk`` best of one image's queries (``logits`` (N, classes), ``objectness``
    (N, 1), ``kernels`` (N, D)) by sqrt(max class probability x objectness probability)."""
    probability, classes = logits.sigmoid().max(dim=1)
    scores = (probability * objectness[:, 0].sigmoid()).sqrt()
    scores, order = scores.topk(min(topk, len(scores)))
    return Selection(scores, classes[order], kernels[order])


def kept(selection: Selection, score_thresh: float) -> torch.Tensor:
    """Which selected queries are instances: a score of at least ``score_thresh``."""
    return selection.scores >= score_thresh


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY boxes of (N, H, W) bool masks, pixel edges inclusive (a one-pixel mask at
    (y, x) is the box (x, y, x + 1, y + 1)); an empty mask's box is all zeros."""
    height, width = masks.shape[-2:]
    columns, rows = masks.any(dim=1), masks.any(dim=2)
    x0 = columns.int().argmax(dim=1)
    x1 = width - columns.flip(1).int().argmax(dim=1)
    y0 = rows.int().argmax(dim=1)
    y1 = height - rows.flip(1).int().argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return boxes * columns.any(dim=1, keepdim=True).float()


def instances_from_kernels(selection: Selection, mask_features: torch.Tensor,
                           score_thresh: float, mask_threshold: float, mask_stride: int,
                           input_size, output_size, valid_size=None):
    """(boxes, scores, classes, masks) of the selected queries scoring at least
    ``score_thresh``, their masks sigmoid(K . X_mask) > ``mask_threshold`` from the (D, h, w)
    ``mask_features`` (stride ``mask_stride`` of the padded input): upsampled to the padded
    input, cropped to the image's ``input_size`` (h, w), resized to ``output_size``, and empty
    outside the top-left ``valid_size`` (h, w; a tensor in a graph whose input is letterboxed:
    the picture's part of the output)."""
    keep = kept(selection, score_thresh)
    scores, classes, kernels = selection.scores[keep], selection.classes[keep], \
        selection.kernels[keep]
    # (N, 1, h, w): the instances along the batch dimension, which may be empty
    logits = instance_masks(kernels[None], mask_features[None])[0][:, None]
    logits = F.interpolate(logits, scale_factor=mask_stride, mode="bilinear",
                           align_corners=False)
    logits = logits[:, :, :input_size[0], :input_size[1]]
    if tuple(logits.shape[-2:]) != tuple(output_size):
        logits = F.interpolate(logits, size=tuple(output_size), mode="bilinear",
                               align_corners=False)
    masks = logits[:, 0] > math.log(mask_threshold / (1 - mask_threshold))  # sigmoid > thresh
    if valid_size is not None:
        rows = torch.arange(masks.shape[1], device=masks.device)[:, None] < valid_size[0]
        columns = torch.arange(masks.shape[2], device=masks.device)[None, :] < valid_size[1]
        masks = masks & (rows & columns)[None]
    return boxes_from_masks(masks), scores, classes, masks
