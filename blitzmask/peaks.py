"""Instances from the heatmap (Sec. 2.1): the number of instances of an image is the number of
heatmap peaks — cells equal to the maximum of their 3x3 neighbourhood — among the top-k that
score above a threshold; each peak's box is decoded from Size D at that cell. Tensor operations
only, so the same code runs in PyTorch and inside the ONNX graph."""
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["Peaks", "extract_peaks", "decode_boxes"]


class Peaks(NamedTuple):
    scores: torch.Tensor  # (N,) sorted, descending
    classes: torch.Tensor  # (N,) long
    cells: torch.Tensor  # (N,) long: flat index y * W + x on the grid


def extract_peaks(heatmap_logits: torch.Tensor, topk: int, score_thresh: float, stride: int = 1,
                  image_size=None) -> Peaks:
    """Peaks of one image's (C, H, W) heatmap logits: sigmoid, 3x3 max-pool suppression of the
    non-maxima, top-``topk`` over all classes and cells, scores > ``score_thresh``. With
    ``image_size`` (h, w: ints, or a tensor inside an exported graph), only cells starting inside
    the image count: a uniform padding area makes a plateau whose every cell is a "peak"."""
    num_classes, height, width = heatmap_logits.shape
    heat = torch.sigmoid(heatmap_logits)[None]
    is_peak = F.max_pool2d(heat, kernel_size=3, stride=1, padding=1) == heat
    scores = heat * is_peak
    if image_size is not None:
        rows = torch.arange(height, device=heat.device) * stride < image_size[0]
        cols = torch.arange(width, device=heat.device) * stride < image_size[1]
        scores = scores * (rows[:, None] & cols[None, :])
    flat = scores.reshape(-1)
    scores, index = flat.topk(min(topk, flat.numel()))
    keep = scores > score_thresh
    scores, index = scores[keep], index[keep]
    return Peaks(scores=scores, classes=index // (height * width), cells=index % (height * width))


def decode_boxes(sizes: torch.Tensor, cells: torch.Tensor, width, stride: int) -> torch.Tensor:
    """(N, 4) XYXY boxes in input pixels from the (N, 4) Size values (l, t, r, b) at the peak
    ``cells`` of a grid ``width`` cells wide: the cell centre ((i + 0.5) * stride) minus/plus
    (l, t, r, b) * stride."""
    ltrb = sizes * stride
    x = ((cells % width).to(ltrb.dtype) + 0.5) * stride
    y = ((cells // width).to(ltrb.dtype) + 0.5) * stride
    return torch.stack([x - ltrb[:, 0], y - ltrb[:, 1], x + ltrb[:, 2], y + ltrb[:, 3]], dim=1)
