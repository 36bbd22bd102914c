"""BlitzMask's losses (Sec. 2.2).

* Heatmap: CenterNet's penalty-reduced pixel-wise focal loss with the Poly-1 perturbation of its
  first Taylor coefficient (PolyLoss: + epsilon * (1 - p_t)^(alpha + 1)), summed over the map and
  divided by the number of instances.
* Size: L1 on the distances (in strides) + UnitBox -log(IoU), weighted per cell (weights of an
  instance sum to 1), averaged over instances.
* Masks (Eq. 1): binary cross-entropy and Dice on M^n = sum_k lambda_{n,k} B^k against the
  instance's soft mask. Both are normalised per instance so that small and large objects weigh
  the same: the cross-entropy is averaged over the cells of a region (the instance's box, YOLACT's
  box-area normalisation, or the whole map: ``MODEL.BLITZMASK.MASK_CROP``), the Dice loss is a
  ratio; the per-instance losses are averaged.
"""
import torch
import torch.nn.functional as F

from rtinst.modeling.fcos.fcos_losses import ltrb_iou_loss
from rtinst.modeling.losses import dice_loss
from rtinst.utils.comm import mean_over_workers

__all__ = ["poly1_focal_loss", "size_loss", "mask_bce_loss", "mask_dice_loss"]


def poly1_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                     beta: float = 4.0, epsilon: float = 1.0) -> torch.Tensor:
    """Sum over all cells of the penalty-reduced focal loss with the Poly-1 term:
    peaks (target == 1): (1-p)^a * -log(p) + eps * (1-p)^(a+1);
    elsewhere: (1-y)^b * [p^a * -log(1-p) + eps * p^(a+1)].
    Divide by the number of instances outside."""
    p = torch.sigmoid(logits)
    positive = target == 1
    positive_loss = (1 - p) ** alpha * -F.logsigmoid(logits) + epsilon * (1 - p) ** (alpha + 1)
    negative_loss = (1 - target) ** beta * (
        p ** alpha * -F.logsigmoid(-logits) + epsilon * p ** (alpha + 1)
    )
    return torch.where(positive, positive_loss, negative_loss).sum()


def size_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor):
    """(L1, UnitBox) losses, each sum_cells(weight * loss) / number of instances (averaged over
    the workers), for (M, 4) predicted and target distances (l, t, r, b) and (M,) weights (one
    instance's sum to 1)."""
    num_instances = mean_over_workers(weights.sum()).clamp(min=1)
    l1 = F.l1_loss(pred, target, reduction="none").sum(dim=1)
    iou = ltrb_iou_loss(pred, target, "iou")
    return (weights * l1).sum() / num_instances, (weights * iou).sum() / num_instances


def mask_bce_loss(logits: torch.Tensor, target: torch.Tensor, regions: torch.Tensor):
    """Mean over instances of the binary cross-entropy averaged over each instance's region
    (N, H, W bool): every instance weighs the same whatever its size."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    regions = regions.to(bce.dtype)
    per_instance = (bce * regions).sum(dim=(1, 2)) / regions.sum(dim=(1, 2)).clamp(min=1)
    return per_instance.mean()


def mask_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6):
    """Mean over instances of the Dice loss (V-Net): 1 - 2 sum(p t) / (sum p^2 + sum t^2 + eps)."""
    return dice_loss(logits, target, squared=True, smooth=0.0, eps=eps).mean()
