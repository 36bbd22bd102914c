"""Mask scoring (Huang et al., Mask Scoring R-CNN, CVPR 2019), used by CenterMask (Sec. 2.6):
a MaskIoU head regresses the IoU of each predicted mask with its ground truth, and at inference
the mask's score is recalibrated as  s_mask = s_cls x IoU_pred.

The IoU target compares the binarised 28x28 prediction of the ground-truth class with the
ground-truth mask cropped to the same RoI, counting the part of the object outside the RoI in
the union (so a box that cuts the object cannot score a perfect IoU).
"""
from typing import List

import pycocotools.mask as mask_util
import torch
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, cat
from detectron2.structures import BitMasks, Instances
from rtinst.modeling.layers import normal_init

__all__ = ["MaskIoUHead", "mask_iou_targets", "mask_iou_loss", "mask_iou_inference"]


class MaskIoUHead(nn.Module):
    """RoI features (C x 14 x 14) concatenated with the max-pooled 28x28 mask probability ->
    ``num_conv`` 3x3 convs (the last with stride 2) -> fc 1024 -> fc 1024 -> IoU per class."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, num_classes: int, conv_dim: int, num_conv: int):
        """
        Args:
            input_shape: the RoI features' channels and (square) resolution.
            num_classes: one IoU is predicted per class; conv_dim, num_conv: the conv layers.
        """
        super().__init__()
        channels = input_shape.channels + 1
        self.convs = []
        for k in range(num_conv):
            stride = 2 if k == num_conv - 1 else 1
            conv = Conv2d(channels, conv_dim, 3, stride=stride, padding=1, activation=F.relu)
            self.add_module(f"maskiou_fcn{k + 1}", conv)
            self.convs.append(conv)
            channels = conv_dim
        resolution = input_shape.height // 2
        self.maskiou_fc1 = nn.Linear(conv_dim * resolution**2, 1024)
        self.maskiou_fc2 = nn.Linear(1024, 1024)
        self.maskiou = nn.Linear(1024, num_classes)
        for layer in self.convs + [self.maskiou_fc1, self.maskiou_fc2]:
            weight_init.c2_msra_fill(layer)
        normal_init(self.maskiou)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dim": cfg.MODEL.ROI_MASKIOU_HEAD.CONV_DIM,
            "num_conv": cfg.MODEL.ROI_MASKIOU_HEAD.NUM_CONV,
        }

    def forward(self, features: torch.Tensor, mask_probs: torch.Tensor) -> torch.Tensor:
        """features (M, C, 14, 14), mask_probs (M, 1, 28, 28) -> predicted IoU (M, num_classes)."""
        x = torch.cat([features, F.max_pool2d(mask_probs, kernel_size=2, stride=2)], dim=1)
        for conv in self.convs:
            x = conv(x)
        x = F.relu(self.maskiou_fc1(x.flatten(1)))
        x = F.relu(self.maskiou_fc2(x))
        return self.maskiou(x)


def _full_areas(instances: Instances) -> torch.Tensor:
    """Area in pixels of each ground-truth mask of ``instances``."""
    masks = instances.gt_masks
    if isinstance(masks, BitMasks):
        return masks.tensor.flatten(1).sum(dim=1).float()
    return masks.area().float()


def _shares_in_box(instances: Instances) -> torch.Tensor:
    """Share of each ground-truth mask's area inside its proposal box (centermask2's ratio:
    the polygons shifted into the box and rasterised at its size, truncated to whole pixels,
    over the polygons' area), in [0, 1], float64."""
    masks, boxes = instances.gt_masks, instances.proposal_boxes.tensor
    if isinstance(masks, BitMasks):
        inside = [m[max(y0, 0):y1, max(x0, 0):x1].sum()
                  for m, (x0, y0, x1, y1) in zip(masks.tensor, boxes.round().long().tolist())]
        in_box = torch.stack(inside).double() if inside else boxes.new_zeros(0).double()
        full = masks.tensor.flatten(1).sum(dim=1).double()
    else:
        in_box = []
        for polygons, (bx0, by0, bx1, by1) in zip(masks.polygons, boxes.tolist()):
            shifted = []
            for p in polygons:
                p = p.copy()
                p[0::2] -= bx0
                p[1::2] -= by0
                shifted.append(p)
            rles = mask_util.frPyObjects(shifted, int(by1 - by0), int(bx1 - bx0))
            in_box.append(float(mask_util.area(rles).sum()))
        in_box = torch.tensor(in_box, dtype=torch.float64)
        full = torch.as_tensor(masks.area(), dtype=torch.float64)
    return (in_box / full).clamp(0, 1).to(boxes.device)


TARGET_STYLES = ("reference", "rescaled")


@torch.no_grad()
def mask_iou_targets(mask_logits: torch.Tensor, proposals: List[Instances],
                     style: str = "rescaled") -> torch.Tensor:
    """IoU of each binarised predicted mask (logit > 0) with its ground truth.

    Args:
        mask_logits: (M, R, R) logits of the ground-truth class, M = all proposals' boxes.
        proposals: per image, foreground proposals with ``proposal_boxes`` and ``gt_masks``.
        style: how the union counts the ground truth's full area on the R x R grid of the box,
            so that the part outside the box counts as missed: "reference" (centermask2) the
            in-box ground truth on the grid divided by the share of the mask inside the box
            (float64); "rescaled" the mask's area rescaled from image pixels to the grid.

    Returns:
        (M,) IoUs.
    """
    if style not in TARGET_STYLES:
        raise ValueError(f"MODEL.ROI_MASKIOU_HEAD.TARGETS must be one of {TARGET_STYLES}, "
                         f"got {style!r}")
    resolution = mask_logits.shape[-1]
    gt_in_box = cat([
        p.gt_masks.crop_and_resize(p.proposal_boxes.tensor, resolution) for p in proposals
    ]).to(mask_logits.device, torch.float32)
    predicted = (mask_logits > 0).float()
    intersection = (predicted * gt_in_box).sum(dim=(1, 2))
    if style == "reference":
        shares = cat([_shares_in_box(p) for p in proposals]).clamp(min=1e-10)
        gt_full = gt_in_box.sum(dim=(1, 2)) / shares
        union = (predicted.sum(dim=(1, 2)) + gt_full - intersection).clamp(min=1.0)
        return intersection / union
    boxes = cat([p.proposal_boxes.tensor for p in proposals])
    box_areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)
    gt_full = cat([_full_areas(p) for p in proposals]).to(mask_logits.device)
    gt_full = gt_full * resolution**2 / box_areas
    gt_full = torch.maximum(gt_full, gt_in_box.sum(dim=(1, 2)))  # rasterisation rounding
    union = predicted.sum(dim=(1, 2)) + gt_full - intersection
    return intersection / union.clamp(min=1.0)


def mask_iou_loss(pred_iou: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L2 loss 1/2 (IoU_pred - IoU)^2 averaged over the RoIs whose target IoU is above 0 (a
    mask missing its object entirely teaches nothing about quality, as in centermask2).

    Args:
        pred_iou: (M,) predicted IoU of the ground-truth class; targets: (M,).
    """
    keep = targets > 0
    if not keep.any():
        return pred_iou.sum() * 0
    return 0.5 * F.mse_loss(pred_iou[keep], targets[keep], reduction="mean")


def mask_iou_inference(pred_iou: torch.Tensor, instances: List[Instances],
                       clamp_iou: bool = False) -> None:
    """Sets ``mask_scores`` = ``scores`` x predicted IoU of the predicted class, per image.

    Args:
        pred_iou: (M, num_classes) for the M detections of all images, in order.
        clamp_iou: clamp the predicted IoU to [0, 1] first (centermask2 does not).
    """
    classes = cat([i.pred_classes for i in instances])
    # shape[0], not len(): inside a traced ONNX graph the count is the graph's own
    ious = pred_iou[torch.arange(classes.shape[0], device=classes.device), classes]
    if clamp_iou:
        ious = ious.clamp(0, 1)
    counts = [i.scores.shape[0] for i in instances]
    for image_ious, image_instances in zip(ious.split(counts), instances):
        image_instances.mask_scores = image_instances.scores * image_ious
