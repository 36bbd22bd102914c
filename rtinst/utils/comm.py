"""Collectives over the data-parallel workers (Detectron2's ``comm`` has none of these)."""
import torch
from torch import distributed as dist

from detectron2.utils import comm

__all__ = ["mean_over_workers"]


def mean_over_workers(value: torch.Tensor) -> torch.Tensor:
    """``value`` averaged over the data-parallel workers (itself with one worker). Every worker
    must call it, with a tensor of the same shape: loss normalisers computed this way are the
    same on all workers, so that averaging their gradients gives the single-worker gradient."""
    world_size = comm.get_world_size()
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / world_size
    return value
