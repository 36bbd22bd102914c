"""FCOS training losses (Eq. 2 and Sec. 3.3).

* classification: sigmoid focal loss over all locations, summed and divided by the number of
  positives N_pos (averaged over workers, at least 1);
* localisation: IoU loss (UnitBox) on the positives' (l, t, r, b), weighted by their center-ness
  targets and divided by the sum of those targets (averaged over workers);
* center-ness: binary cross-entropy with logits on the positives, divided by N_pos.
With no positives every loss is an exact 0 that still has a gradient path.
"""
from typing import Dict

import torch
from fvcore.nn import sigmoid_focal_loss
from torch.nn import functional as F

from ...utils.comm import mean_over_workers

__all__ = ["ltrb_iou_loss", "FCOSLosses"]

IOU_EPS = 1e-7  # keeps -log(IoU) and the GIoU ratio finite for non-overlapping boxes


def _ltrb_area(ltrb: torch.Tensor) -> torch.Tensor:
    """Areas of boxes given as distances (l, t, r, b) from a point; negative extents count as 0."""
    return (ltrb[:, 0] + ltrb[:, 2]).clamp(min=0) * (ltrb[:, 1] + ltrb[:, 3]).clamp(min=0)


def ltrb_iou_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str,
                  smoothing: float = 0.0) -> torch.Tensor:
    """Per-row IoU loss of two boxes given as distances (l, t, r, b) from the same point.

    loss_type: "iou" -log(IoU) (UnitBox), "linear_iou" 1 - IoU, "giou" 1 - GIoU.
    smoothing: IoU = (intersection + s) / (union + s) (AdelaiDet's FCOS uses s = 1, in the
        distances' units, i.e. strides with normalised targets).
    """
    intersection = _ltrb_area(torch.minimum(pred, target))
    union = _ltrb_area(pred) + _ltrb_area(target) - intersection
    iou = (intersection + smoothing) / (union + smoothing).clamp(min=IOU_EPS)
    if loss_type == "iou":
        return -torch.log(iou.clamp(min=IOU_EPS))
    if loss_type == "linear_iou":
        return 1 - iou
    if loss_type == "giou":
        enclosing = _ltrb_area(torch.maximum(pred, target)).clamp(min=IOU_EPS)
        return 1 - (iou - (enclosing - union) / enclosing)
    raise ValueError(f"LOC_LOSS_TYPE must be 'iou', 'linear_iou' or 'giou', got {loss_type!r}")


class FCOSLosses:
    """Computes ``loss_fcos_cls``, ``loss_fcos_loc`` and ``loss_fcos_ctr`` from flattened
    predictions and targets."""

    def __init__(
        self, num_classes: int, focal_alpha: float, focal_gamma: float, loc_loss_type: str,
        iou_smoothing: float = 0.0,
    ):
        self.num_classes = num_classes
        self.iou_smoothing = iou_smoothing
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.loc_loss_type = loc_loss_type

    def __call__(
        self,
        logits: torch.Tensor,
        bbox_reg: torch.Tensor,
        ctrness: torch.Tensor,
        labels: torch.Tensor,
        reg_targets: torch.Tensor,
        ctrness_targets: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            logits (M, K), bbox_reg (M, 4), ctrness (M,) logits: predictions at M locations.
            labels (M,) (K = background), reg_targets (M, 4), ctrness_targets (M,): targets in the
                same units as ``bbox_reg``.
        """
        positive = labels != self.num_classes
        num_pos = mean_over_workers(positive.sum().to(logits.dtype)).clamp(min=1.0)

        class_targets = F.one_hot(labels, self.num_classes + 1)[:, : self.num_classes].to(logits)
        loss_cls = sigmoid_focal_loss(
            logits, class_targets, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        ) / num_pos

        ctr_targets = ctrness_targets[positive]
        ctr_weight_sum = mean_over_workers(ctr_targets.sum()).clamp(min=IOU_EPS)
        loc = ltrb_iou_loss(bbox_reg[positive], reg_targets[positive], self.loc_loss_type,
                            self.iou_smoothing)
        loss_loc = (loc * ctr_targets).sum() / ctr_weight_sum

        loss_ctr = F.binary_cross_entropy_with_logits(
            ctrness[positive], ctr_targets, reduction="sum"
        ) / num_pos
        return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}
