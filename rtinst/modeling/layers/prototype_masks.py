"""Instance masks as linear combinations of shared prototypes (YOLACT Sec. 3.3, Eq. 1:
M = sigma(P C^T); BlitzMask's Eq. 1 over its Spanning Set), and the crop of masks to their
boxes (YOLACT Sec. 3.3, "Cropping"); masks assembled on a feature grid brought to the image
in one resampling (``grid_masks_to_image``)."""
import math
from typing import Optional

import torch

__all__ = ["assemble_masks", "crop_to_boxes", "grid_masks_to_image"]


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


def grid_masks_to_image(mask_logits: torch.Tensor, stride: int, input_size, output_size,
                        threshold: float = 0.5, boxes: Optional[torch.Tensor] = None
                        ) -> torch.Tensor:
    """(N, H_out, W_out) bool masks from (N, h, w) logits on the stride-``stride`` grid of a
    padded input whose top-left ``input_size`` (h, w) pixels hold the picture, shown at
    ``output_size``: one bilinear resampling straight from the grid to each output pixel's
    centre (half-pixel centres and edge values beyond the border, as
    ``F.interpolate(align_corners=False)``), foreground where sigmoid > ``threshold``, and with
    ``boxes`` (N, 4) XYXY in output pixels only inside them (``crop_to_boxes``). Upsampling to
    the padded input, cropping and resizing to the output would interpolate twice; the PyTorch
    models and ``ONNXPredictor`` both call this, so the two give the same masks."""
    output_h, output_w = output_size
    if mask_logits.shape[0] == 0:
        return torch.zeros(0, output_h, output_w, dtype=torch.bool, device=mask_logits.device)
    # F.interpolate's kernel given the output size and the scale (output pixels per grid cell)
    # that maps it onto the picture's part of the grid, which F.interpolate cannot take together
    logits = torch.ops.aten.upsample_bilinear2d(
        mask_logits[None], [output_h, output_w], False,
        stride * output_h / float(input_size[0]), stride * output_w / float(input_size[1]))[0]
    masks = logits > math.log(threshold / (1 - threshold))
    return masks if boxes is None else crop_to_boxes(masks, boxes)
