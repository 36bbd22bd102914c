"""Bipartite matching of predictions to ground truth (DETR, Carion et al., ECCV 2020, Sec. 3.1):
per image, the one-to-one assignment of queries to targets of minimum total cost by the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``), the cost a weighted sum of pluggable terms.

``linear_assignment`` is the assignment itself, with forbidden pairs (an infinite or NaN cost);
``HungarianMatcher`` batches it over images. Ready-made costs, each ``cost(predictions, targets)``
of one image -> (queries, targets) matrix, with DETR's key names (predictions ``pred_logits``
(Q, classes), ``pred_masks`` (Q, H, W) logits; targets ``labels`` (T,), ``masks`` (T, H, W)):

* ``class_cost``: minus the softmax probability of the target's class (DETR);
* ``focal_class_cost``: the focal loss of the target's class as a positive minus as a negative,
  on sigmoid probabilities (Deformable DETR, Zhu et al., ICLR 2021);
* ``dice_cost``: the Dice loss of every (mask logits, target mask) pair (Mask2Former).
"""
from typing import Callable, Mapping, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .losses import pairwise_dice_loss

__all__ = ["linear_assignment", "HungarianMatcher", "COSTS", "class_cost", "focal_class_cost",
           "dice_cost"]

CostFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]], torch.Tensor]


def linear_assignment(cost, forbidden_cost: float = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns) int64 tensors, rows increasing, of the minimum-cost one-to-one assignment
    for a (R, C) ``cost`` (tensor or array): min(R, C) pairs less those of a forbidden pair.

    A pair costing inf or NaN is forbidden: it is given the finite ``forbidden_cost`` and dropped
    from the result if the assignment uses it. The default, larger than the spread of any sum of
    min(R, C) allowed costs, makes the assignment first keep as many allowed pairs as possible,
    then minimise their cost."""
    from scipy.optimize import linear_sum_assignment  # here: import rtinst does not load scipy

    if isinstance(cost, torch.Tensor):
        cost = cost.detach().cpu().double().numpy()
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"linear_assignment takes a (rows, columns) cost, got shape {cost.shape}")
    allowed = np.isfinite(cost)
    if forbidden_cost is None:
        largest = np.abs(cost[allowed]).max(initial=0.0)
        forbidden_cost = (2 * largest + 1) * (min(cost.shape) + 1)
    rows, cols = linear_sum_assignment(np.where(allowed, cost, forbidden_cost))
    kept = allowed[rows, cols]
    return torch.as_tensor(rows[kept], dtype=torch.int64), torch.as_tensor(cols[kept],
                                                                            dtype=torch.int64)


def class_cost(predictions, targets) -> torch.Tensor:
    """(Q, T) minus the softmax probability of each target's class (``pred_logits`` (Q, classes),
    ``labels`` (T,))."""
    return -predictions["pred_logits"].softmax(-1)[:, targets["labels"]]


def focal_class_cost(predictions, targets, alpha: float = 0.25, gamma: float = 2.0):
    """(Q, T) focal loss of each target's class taken as a positive minus taken as a negative, on
    sigmoid probabilities p: alpha (1-p)^gamma (-log p) - (1-alpha) p^gamma (-log(1-p))."""
    logits = predictions["pred_logits"][:, targets["labels"]]
    p = logits.sigmoid()
    positive = alpha * (1 - p) ** gamma * -F.logsigmoid(logits)
    negative = (1 - alpha) * p ** gamma * -F.logsigmoid(-logits)
    return positive - negative


def dice_cost(predictions, targets) -> torch.Tensor:
    """(Q, T) Dice loss (smoothing 1) of every pair of ``pred_masks`` logits (Q, H, W) and target
    ``masks`` (T, H, W)."""
    return pairwise_dice_loss(predictions["pred_masks"], targets["masks"])


COSTS = {"class": class_cost, "focal_class": focal_class_cost, "dice": dice_cost}


class HungarianMatcher:
    """Matches each image's queries to its targets by minimum total cost
    sum_k weight_k * cost_k(predictions, targets)."""

    def __init__(self, costs: Mapping[str, Union[float, Tuple[float, CostFn]]]):
        """
        Args:
            costs: name -> weight for a cost of ``COSTS``, or name -> (weight, cost function)
                for any other: ``cost(predictions, targets)`` of one image -> a (queries,
                targets) tensor, inf or NaN for a forbidden pair.
        """
        if not costs:
            raise ValueError("HungarianMatcher needs at least one cost")
        self.costs = {}
        for name, entry in costs.items():
            if isinstance(entry, tuple):
                weight, cost = entry
            elif name in COSTS:
                weight, cost = entry, COSTS[name]
            else:
                raise ValueError(f"HungarianMatcher: unknown cost {name!r} (ready-made: "
                                 f"{', '.join(COSTS)}); give (weight, cost function) for another")
            self.costs[name] = (float(weight), cost)

    def cost_matrix(self, predictions, targets) -> torch.Tensor:
        """The (queries, targets) total cost of one image."""
        total = None
        for name, (weight, cost) in self.costs.items():
            matrix = cost(predictions, targets)
            if total is not None and matrix.shape != total.shape:
                raise ValueError(f"HungarianMatcher: cost {name!r} has shape "
                                 f"{tuple(matrix.shape)}, the costs before it {tuple(total.shape)}")
            total = weight * matrix if total is None else total + weight * matrix
        return total

    @torch.no_grad()
    def __call__(self, predictions: Mapping[str, torch.Tensor],
                 targets: Sequence[Mapping[str, torch.Tensor]]):
        """[(query indices, target indices)] int64 tensors per image, for ``predictions`` batched
        (every tensor's first dimension the image) and one ``targets`` mapping per image."""
        num_images = {name: len(value) for name, value in predictions.items()}
        if set(num_images.values()) != {len(targets)}:
            raise ValueError(f"HungarianMatcher: {len(targets)} images of targets but predictions "
                             f"for {num_images}")
        return [
            linear_assignment(self.cost_matrix({k: v[i] for k, v in predictions.items()}, target))
            for i, target in enumerate(targets)
        ]
