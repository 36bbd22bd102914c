"""MobileInst's training objective (Sec. 3.6, Eq. 2), SparseInst's (Cheng et al., CVPR 2022):

    L = lambda_c L_cls + lambda_mask L_mask + lambda_obj L_obj   (2 / 2 / 1)

after a one-to-one assignment of the N predictions to the objects (bipartite matching, DETR)
that maximises the sum of dice(M, T)^alpha x p_class^beta (SparseInst's mask-based score, alpha
0.8, beta 0.2), through the shared ``HungarianMatcher``:

* L_cls: sigmoid focal loss of every query (matched: its object's class; the others: none),
  summed and divided by the number of objects (averaged over the workers);
* L_mask: the dice loss plus the mean pixel-wise binary cross-entropy of each matched mask,
  averaged over the matched pairs (each term its own weight, both 2 by default);
* L_obj: binary cross-entropy of the matched queries' IoU-aware objectness against the IoU of
  their thresholded (> 0.4) mask with the object's, averaged over them.

Masks are compared at the prediction's resolution (stride 8 of the padded batch): the objects'
masks, each at its own image's size, are area-downsampled to it.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from rtinst.modeling.losses import (dice_loss, num_instances_over_workers, pairwise_dice_loss,
                                    sigmoid_focal_loss)
from rtinst.modeling.matcher import HungarianMatcher

__all__ = ["MobileInstCriterion", "mask_score_cost", "mask_iou", "downsample_masks"]

IOU_MASK_THRESHOLD = 0.4  # SparseInst's binarisation of a prediction for its IoU target


def mask_score_cost(predictions, targets, alpha: float = 0.8, beta: float = 0.2):
    """(Q, T) minus dice(sigmoid(M_q), T_t)^alpha x sigmoid(class logit of t's class)^beta
    (SparseInst's matching score; the dice without smoothing)."""
    dice = 1 - pairwise_dice_loss(predictions["pred_masks"], targets["masks"], smooth=0.0,
                                  eps=1e-4)
    probability = predictions["pred_logits"].sigmoid()[:, targets["labels"]]
    return -(dice.clamp(min=0) ** alpha) * probability ** beta


def mask_iou(predicted_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) IoU of each mask thresholded at ``IOU_MASK_THRESHOLD`` with its (binary) target."""
    predicted = (predicted_logits.sigmoid() > IOU_MASK_THRESHOLD).flatten(1).float()
    targets = (targets > 0.5).flatten(1).float()
    intersection = (predicted * targets).sum(1)
    union = predicted.sum(1) + targets.sum(1) - intersection
    return intersection / union.clamp(min=1e-6)


def downsample_masks(masks: torch.Tensor, size, stride: int) -> torch.Tensor:
    """(T, h, w) float masks at the prediction's ``size`` (h, w) and ``stride``: the (T, H, W)
    masks of an image (which fills the top-left H x W of the padded batch) padded to ``size``
    times ``stride`` and area-averaged by ``stride``."""
    height, width = masks.shape[-2:]
    if height > size[0] * stride or width > size[1] * stride:
        raise ValueError(f"object masks of {height} x {width} exceed the predictions' "
                         f"{size[0]} x {size[1]} at stride {stride}")
    if not len(masks):
        return masks.new_zeros((0, *size), dtype=torch.float32)
    padded = F.pad(masks.float(), (0, size[1] * stride - width, 0, size[0] * stride - height))
    return F.avg_pool2d(padded[:, None], stride)[:, 0]


class MobileInstCriterion(nn.Module):
    """Losses of a batch of predictions against its images' objects."""

    def __init__(self, *, num_classes: int, matcher_alpha: float = 0.8,
                 matcher_beta: float = 0.2, focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 weights: Dict[str, float], mask_stride: int = 8):
        super().__init__()
        self.num_classes = num_classes
        self.mask_stride = mask_stride  # of the predicted masks in the padded input
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.weights = dict(weights)
        self.matcher = HungarianMatcher({"mask_score": (1.0, lambda p, t: mask_score_cost(
            p, t, matcher_alpha, matcher_beta))})

    def targets(self, gt_instances, mask_size) -> List[Dict[str, torch.Tensor]]:
        """Each image's ``labels`` and its ``masks`` at the prediction's resolution (an image
        without objects may have no ``gt_masks``)."""
        return [{"labels": x.gt_classes,
                 "masks": downsample_masks(x.gt_masks.tensor, mask_size, self.mask_stride)
                 if x.has("gt_masks")
                 else torch.zeros(0, *mask_size, device=x.gt_classes.device)}
                for x in gt_instances]

    def forward(self, logits, objectness, masks, gt_instances) -> Dict[str, torch.Tensor]:
        """``logits`` (B, N, classes), ``objectness`` (B, N, 1), ``masks`` (B, N, h, w) logits;
        ``gt_instances``: B ``Instances`` with ``gt_classes`` and ``gt_masks`` (BitMasks, at the
        padded input's size or less)."""
        targets = self.targets(gt_instances, masks.shape[-2:])
        indices = self.matcher({"pred_logits": logits.detach(), "pred_masks": masks.detach()},
                               targets)
        num_instances = num_instances_over_workers(sum(len(t["labels"]) for t in targets),
                                                   logits.device)
        batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)])
        queries = torch.cat([q for q, _ in indices])
        labels = torch.cat([t["labels"][o] for t, (_, o) in zip(targets, indices)])
        matched_targets = torch.cat([t["masks"][o] for t, (_, o) in zip(targets, indices)])

        class_targets = torch.zeros_like(logits)
        class_targets[batch, queries, labels] = 1.0
        losses = {"loss_cls": sigmoid_focal_loss(logits, class_targets, self.focal_alpha,
                                                 self.focal_gamma, "sum") / num_instances}
        matched = masks[batch, queries]
        if len(matched):
            iou = mask_iou(matched.detach(), matched_targets)
            losses["loss_mask_dice"] = dice_loss(matched, matched_targets).mean()
            losses["loss_mask_bce"] = F.binary_cross_entropy_with_logits(matched, matched_targets)
            losses["loss_objectness"] = F.binary_cross_entropy_with_logits(
                objectness[batch, queries, 0], iou)
        else:  # no object: zero losses that still reach every output
            zero = masks.sum() * 0 + objectness.sum() * 0
            losses.update(loss_mask_dice=zero, loss_mask_bce=zero, loss_objectness=zero)
        return {name: self.weights[name] * value for name, value in losses.items()}
