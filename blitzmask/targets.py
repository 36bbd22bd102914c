"""BlitzMask's training targets on the stride-s output grid (Sec. 2.1-2.2).

* Heatmap Y: for each instance an elliptical Gaussian on the channel of its class, peaking with
  value 1 at the grid cell holding its mask's centre of mass, with standard deviations
  ``alpha * w / 6`` and ``alpha * h / 6`` (its box size in cells); objects overlap by maximum.
* Size D: distances (l, t, r, b) from a cell's centre to the instance's box sides, in strides;
  supervised at the peak ("peak") or at every cell of the box weighted by the instance's
  Gaussian, normalised to sum 1 per instance ("gaussian").
* Masks: the instance masks averaged over each s x s cell (soft coverage in [0, 1]).

Instances whose mask is empty (nothing left after augmentation) have no centre of mass and are
left out of every target.
"""
from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F

from detectron2.structures import Instances

__all__ = [
    "BlitzMaskTargets",
    "centre_of_mass",
    "gaussian_maps",
    "size_targets",
    "size_weights",
    "build_targets",
]


@dataclass
class BlitzMaskTargets:
    """Targets of one image. N instances on an H x W grid."""

    heatmap: torch.Tensor  # (C, H, W)
    peaks: torch.Tensor  # (N, 2) long: (x, y) cell of each instance's centre of mass
    classes: torch.Tensor  # (N,) long
    sizes: torch.Tensor  # (N, 4, H, W): (l, t, r, b) from each cell centre, in strides
    size_weights: torch.Tensor  # (N, H, W), each instance's weights sum to 1
    masks: torch.Tensor  # (N, H, W) soft masks
    box_regions: torch.Tensor  # (N, H, W) bool: cells overlapping the instance's box


def centre_of_mass(masks: torch.Tensor) -> torch.Tensor:
    """(N, 2) centre (x, y) of each (N, H, W) mask, in pixels (pixel i covers [i, i+1))."""
    masks = masks.float()
    area = masks.sum(dim=(1, 2)).clamp(min=1e-12)
    ys = torch.arange(masks.shape[1], dtype=masks.dtype, device=masks.device) + 0.5
    xs = torch.arange(masks.shape[2], dtype=masks.dtype, device=masks.device) + 0.5
    x = (masks.sum(dim=1) * xs).sum(dim=1) / area
    y = (masks.sum(dim=2) * ys).sum(dim=1) / area
    return torch.stack([x, y], dim=1)


def gaussian_maps(peaks: torch.Tensor, box_sizes: torch.Tensor, height: int, width: int,
                  alpha: float) -> torch.Tensor:
    """(N, H, W) Gaussians exp(-dx^2 / 2 sx^2 - dy^2 / 2 sy^2) around each integer ``peaks``
    cell (x, y), with (sx, sy) = alpha * ``box_sizes`` (w, h, in cells) / 6, at least 1/6 cell;
    exactly 1 at the peak."""
    sigma = (alpha * box_sizes / 6).clamp(min=1 / 6)
    ys = torch.arange(height, dtype=sigma.dtype, device=sigma.device)
    xs = torch.arange(width, dtype=sigma.dtype, device=sigma.device)
    dx = (xs[None, :] - peaks[:, 0:1].to(sigma.dtype)) / sigma[:, 0:1]  # (N, W)
    dy = (ys[None, :] - peaks[:, 1:2].to(sigma.dtype)) / sigma[:, 1:2]  # (N, H)
    return torch.exp(-0.5 * (dy[:, :, None] ** 2 + dx[:, None, :] ** 2))


def size_targets(boxes: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """(N, 4, H, W) distances (l, t, r, b) from each cell centre ((i + 0.5) * stride) to the
    sides of each (N, 4) XYXY box in pixels, in strides, clamped at 0."""
    ys = (torch.arange(height, dtype=boxes.dtype, device=boxes.device) + 0.5) * stride
    xs = (torch.arange(width, dtype=boxes.dtype, device=boxes.device) + 0.5) * stride
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    ys, xs = ys[None, :, None], xs[None, None, :]
    shape = (boxes.shape[0], height, width)
    ltrb = [(xs - x1).expand(shape), (ys - y1).expand(shape),
            (x2 - xs).expand(shape), (y2 - ys).expand(shape)]
    return (torch.stack(ltrb, dim=1) / stride).clamp(min=0)


def box_regions(boxes: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """(N, H, W) bool: the cells that overlap each (N, 4) XYXY box (pixels)."""
    ys = torch.arange(height, device=boxes.device) * stride
    xs = torch.arange(width, device=boxes.device) * stride
    inside_y = (ys[None, :] + stride > boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])
    inside_x = (xs[None, :] + stride > boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])
    return inside_y[:, :, None] & inside_x[:, None, :]


def size_weights(gaussians: torch.Tensor, peaks: torch.Tensor, regions: torch.Tensor,
                 mode: str) -> torch.Tensor:
    """(N, H, W) weights of the size loss, summing to 1 per instance. "peak": the peak cell only;
    "gaussian": each cell of the instance's box whose Gaussian is the largest there (the
    instance owns it), weighted by that Gaussian."""
    n, height, width = gaussians.shape
    if mode == "peak":
        weights = torch.zeros_like(gaussians)
        weights[torch.arange(n), peaks[:, 1], peaks[:, 0]] = 1.0
        return weights
    if mode != "gaussian":
        raise ValueError(f"MODEL.BLITZMASK.SIZE_REGION must be 'peak' or 'gaussian', got {mode!r}")
    if n == 0:
        return gaussians.clone()
    owned = gaussians * regions
    owner = owned.argmax(dim=0, keepdim=True)
    owned = owned * (torch.arange(n, device=owned.device)[:, None, None] == owner)
    # the peak always counts, even where another instance's Gaussian is larger
    owned[torch.arange(n), peaks[:, 1], peaks[:, 0]] = 1.0
    return owned / owned.sum(dim=(1, 2), keepdim=True)


def build_targets(instances: Instances, num_classes: int, height: int, width: int, stride: int,
                  alpha: float, size_region: str) -> BlitzMaskTargets:
    """Targets of one image's ground truth (``gt_boxes``, ``gt_classes``, ``gt_masks`` as
    BitMasks at the input resolution) on the H x W grid of the padded input / ``stride``."""
    masks = instances.gt_masks.tensor.float()
    masks = F.pad(masks, (0, width * stride - masks.shape[2], 0, height * stride - masks.shape[1]))
    keep = masks.flatten(1).sum(dim=1) > 0
    masks = masks[keep]
    boxes = instances.gt_boxes.tensor[keep].to(masks.dtype)
    classes = instances.gt_classes[keep]

    peaks = (centre_of_mass(masks) / stride).floor().long()
    peaks[:, 0].clamp_(0, width - 1)
    peaks[:, 1].clamp_(0, height - 1)
    box_sizes = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1) / stride
    gaussians = gaussian_maps(peaks, box_sizes, height, width, alpha)
    heatmap = masks.new_zeros(num_classes, height, width)
    for c in classes.unique():
        heatmap[c] = gaussians[classes == c].max(dim=0).values
    regions = box_regions(boxes, height, width, stride)
    return BlitzMaskTargets(
        heatmap=heatmap,
        peaks=peaks,
        classes=classes,
        sizes=size_targets(boxes, height, width, stride),
        size_weights=size_weights(gaussians, peaks, regions, size_region),
        masks=F.avg_pool2d(masks[:, None], stride)[:, 0],
        box_regions=regions,
    )


def build_batch_targets(gt_instances: List[Instances], **kwargs) -> List[BlitzMaskTargets]:
    """``build_targets`` for each image of a batch."""
    return [build_targets(instances, **kwargs) for instances in gt_instances]
