"""Instance masks as linear combinations of shared prototypes (YOLACT Sec. 3.3, Eq. 1:
M = sigma(P C^T); BlitzMask's Eq. 1 over its Spanning Set), and the crop of masks to their
boxes (YOLACT Sec. 3.3, "Cropping")."""
from typing import Optional

import torch

__all__ = ["assemble_masks", "crop_to_boxes"]


def assemble_masks(coefficients: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """(N, H, W) mask logits M^n = sum_k coefficients[n, k] * prototypes[k] for (N, K)
    ``coefficients`` and (K, H, W) ``prototypes``."""
    k, height, width = prototypes.shape
    return (coefficients @ prototypes.reshape(k, -1)).reshape(-1, height, width)


def crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor, padding: Optional[float] = None
                  ) -> torch.Tensor:
    """``masks`` (N, H, W) with the pixels outside their box set to zero (False); ``boxes``
    (N, 4) are XYXY in the masks' pixel units.

    ``padding`` None: a pixel is kept when its centre lies in the box, edges included.
    ``padding`` p: YOLACT's crop, a pixel is kept when its index i (j) satisfies
    x1 - p <= i < x2 + p (y1 - p <= j < y2 + p), the reference's p being 1.
    """
    height, width = masks.shape[-2:]
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)
    if padding is None:
        ys, xs = ys + 0.5, xs + 0.5
        inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] <= boxes[:, 3:4])
        inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] <= boxes[:, 2:3])
    else:
        inside_y = (ys[None] >= boxes[:, 1:2] - padding) & (ys[None] < boxes[:, 3:4] + padding)
        inside_x = (xs[None] >= boxes[:, 0:1] - padding) & (xs[None] < boxes[:, 2:3] + padding)
    return masks * (inside_y[:, :, None] & inside_x[:, None, :])
