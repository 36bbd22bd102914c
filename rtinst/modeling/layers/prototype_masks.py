"""Instance masks as linear combinations of shared prototypes (YOLACT Sec. 3.3, Eq. 1:
M = sigma(P C^T); BlitzMask's Eq. 1 over its Spanning Set), and the crop of masks to their
boxes (YOLACT Sec. 3.3, "Cropping")."""
import torch

__all__ = ["assemble_masks", "crop_to_boxes"]


def assemble_masks(coefficients: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """(N, H, W) mask logits M^n = sum_k coefficients[n, k] * prototypes[k] for (N, K)
    ``coefficients`` and (K, H, W) ``prototypes``."""
    k, height, width = prototypes.shape
    return (coefficients @ prototypes.reshape(k, -1)).reshape(-1, height, width)


def crop_to_boxes(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``masks`` (N, H, W) with every pixel whose centre lies outside its box set to zero
    (False); ``boxes`` (N, 4) are XYXY in the masks' pixel units, their edges inclusive."""
    height, width = masks.shape[-2:]
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] <= boxes[:, 3:4])
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] <= boxes[:, 2:3])
    return masks * (inside_y[:, :, None] & inside_x[:, None, :])
