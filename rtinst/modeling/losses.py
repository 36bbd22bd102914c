"""Mask and classification losses of set-prediction (query-based) methods.

* ``dice_loss`` / ``pairwise_dice_loss``: the Dice loss (Milletari et al., "V-Net", 3DV 2016,
  eq. 1) per instance, or for every (prediction, target) pair (a matching cost, as in DETR /
  Mask2Former): ``1 - (2 sum(p t) + smooth) / (sum(p^k) + sum(t^k) + smooth + eps)`` over the
  pixels, with k = 2 when ``squared`` (V-Net's form) and 1 otherwise. ``smooth`` (default 1,
  Laplace smoothing, DETR's and Mask2Former's choice) makes two empty masks a loss of 0;
  ``eps`` only keeps the denominator away from 0 (BlitzMask: ``smooth=0, eps=1e-6, squared``).
* ``sigmoid_focal_loss``: fvcore's (Lin et al., "Focal Loss for Dense Object Detection", ICCV
  2017, eq. 5, with the alpha balance), re-exported.
* ``num_instances_over_workers``: the loss normaliser "number of instances", averaged over the
  data-parallel workers and at least 1.
"""
import torch
from fvcore.nn import sigmoid_focal_loss

from ..utils.comm import mean_over_workers

__all__ = ["dice_loss", "pairwise_dice_loss", "sigmoid_focal_loss", "num_instances_over_workers"]


def _probabilities(inputs: torch.Tensor, from_logits: bool) -> torch.Tensor:
    """(N, pixels) probabilities of (N, ...) logits or probabilities."""
    inputs = inputs.flatten(1)
    return inputs.sigmoid() if from_logits else inputs


def _sums(p, t, squared):
    """Per-row sums of p and t (of their squares when ``squared``)."""
    if squared:
        return (p * p).sum(dim=1), (t * t).sum(dim=1)
    return p.sum(dim=1), t.sum(dim=1)


def _dice(intersection, input_sum, target_sum, smooth, eps):
    return 1 - (2 * intersection + smooth) / (input_sum + target_sum + smooth + eps)


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, *, from_logits: bool = True,
              squared: bool = False, smooth: float = 1.0, eps: float = 0.0) -> torch.Tensor:
    """(N,) Dice loss of each instance (formula in the module docstring) for (N, ...) mask
    ``inputs`` (logits, or probabilities if not ``from_logits``) and ``targets`` (in [0, 1]) of
    the same shape; the caller reduces (mean, or sum over the number of instances)."""
    if inputs.shape != targets.shape:
        raise ValueError(f"dice_loss: inputs {tuple(inputs.shape)} and targets "
                         f"{tuple(targets.shape)} must have the same shape")
    p, t = _probabilities(inputs, from_logits), targets.flatten(1).to(inputs.dtype)
    return _dice((p * t).sum(dim=1), *_sums(p, t, squared), smooth, eps)


def pairwise_dice_loss(inputs: torch.Tensor, targets: torch.Tensor, *, from_logits: bool = True,
                       squared: bool = False, smooth: float = 1.0,
                       eps: float = 0.0) -> torch.Tensor:
    """(N, M) Dice loss of every pair of the N ``inputs`` (N, ...) and M ``targets`` (M, ...) of
    the same mask shape: ``[i, j]`` is ``dice_loss(inputs[i:i+1], targets[j:j+1])``."""
    if inputs.shape[1:] != targets.shape[1:]:
        raise ValueError(f"pairwise_dice_loss: inputs {tuple(inputs.shape)} and targets "
                         f"{tuple(targets.shape)} must have the same mask shape")
    p, t = _probabilities(inputs, from_logits), targets.flatten(1).to(inputs.dtype)
    input_sum, target_sum = _sums(p, t, squared)
    return _dice(p @ t.T, input_sum[:, None], target_sum[None, :], smooth, eps)


def num_instances_over_workers(count, device=None) -> torch.Tensor:
    """``count`` (an int or a tensor: this worker's instances), as a float tensor (on ``device``
    if given) averaged over the data-parallel workers and clamped at 1: a loss normaliser with
    the same value on every worker. Every worker must call it."""
    count = torch.as_tensor(count, dtype=torch.float, device=device)
    return mean_over_workers(count).clamp(min=1.0)
