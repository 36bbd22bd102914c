"""Kernel association (Sec. 3.4, after MinVIS, Huang et al., NeurIPS 2022): a frame's instances
are matched to the tracks by the cosine similarity of their mask kernels, one-to-one by the
Hungarian algorithm, a pair being allowed from ``MIN_SIMILARITY`` on. Queries are trained to
match objects one-to-one, so duplicates are rare and this simple measure suffices.

Registered as the association ``"KernelCosine"`` (``MODEL.TRACKER.ASSOCIATION``) of rtinst's
``OnlineTracker``, which keeps each track's last kernel (``fields``). Within a kernel-reuse
clip the kernels are the keyframe's, so every instance keeps its track (similarity 1).
"""
import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable

from rtinst.video.association import hungarian_matching

__all__ = ["KernelCosine", "kernel_similarity"]


def kernel_similarity(kernels_a: torch.Tensor, kernels_b: torch.Tensor) -> torch.Tensor:
    """(N, M) cosine similarity of the (N, D) and (M, D) kernels."""
    return F.normalize(kernels_a.float(), dim=1) @ F.normalize(kernels_b.float(), dim=1).T


class KernelCosine:
    """``(tracks, detections) -> [(detection index, track index)]`` on ``pred_kernels``."""

    fields = ("pred_kernels",)

    @configurable
    def __init__(self, *, min_similarity: float = 0.5):
        self.min_similarity = min_similarity

    @classmethod
    def from_config(cls, cfg):
        return {"min_similarity": cfg.MODEL.MOBILEINST.VIDEO.ASSOCIATION_MIN_SIMILARITY}

    def __call__(self, tracks, detections):
        if not tracks or not len(detections):
            return []
        if not detections.has("pred_kernels"):
            raise ValueError("MODEL.TRACKER.ASSOCIATION 'KernelCosine' needs the model's "
                             "pred_kernels (MobileInst's instances have them)")
        track_kernels = torch.cat([track.last.pred_kernels for track in tracks])
        similarity = kernel_similarity(detections.pred_kernels, track_kernels).numpy()
        return hungarian_matching(1.0 - similarity,
                                  np.asarray(similarity >= self.min_similarity))
