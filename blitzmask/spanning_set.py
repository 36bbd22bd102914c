"""Masks as linear combinations of the Spanning Set (Eq. 1): M^n = sum_k lambda_{n,k} B^k (rtinst's
``assemble_masks``, YOLACT's prototype assembly), where lambda_n is the Coefficients output at
instance n's centre cell; then (Fig. 1) M^n is resized to the image and thresholded at
sigma(M^n) > 0.5, optionally only inside the instance's box (``crop_to_boxes``)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from rtinst.modeling.layers import assemble_masks, crop_to_boxes

__all__ = ["SpanningSetMasks", "gather_coefficients", "masks_to_image"]


def gather_coefficients(coefficients: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(N, K) coefficients lambda_n of one image's (K, H, W) Coefficients at flat ``cells``."""
    return coefficients.reshape(coefficients.shape[0], -1)[:, cells].t()


def masks_to_image(mask_logits: torch.Tensor, stride: int, input_size, output_size,
                   threshold: float = 0.5, boxes=None) -> torch.Tensor:
    """(N, H_out, W_out) bool masks: the (N, h, w) logits on the stride grid of the padded input
    are upsampled bilinearly to the input resolution, cropped to the image's ``input_size`` (h, w)
    and resized to ``output_size``; pixels with sigmoid > ``threshold`` are foreground (and, with
    ``boxes`` (N, 4) XYXY in output pixels, only those inside the box)."""
    input_h, input_w = input_size
    output_h, output_w = output_size
    logits = mask_logits[:, None]
    padded = (logits.shape[2] * stride, logits.shape[3] * stride)
    if (input_h, input_w) == (output_h, output_w) and padded == (input_h, input_w):
        logits = F.interpolate(logits, size=(output_h, output_w), mode="bilinear",
                               align_corners=False)
    else:
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        logits = F.interpolate(logits[:, :, :input_h, :input_w], size=(output_h, output_w),
                               mode="bilinear", align_corners=False)
    masks = logits.reshape(-1, output_h, output_w) > math.log(threshold / (1 - threshold))
    return masks if boxes is None else crop_to_boxes(masks, boxes)


class SpanningSetMasks(nn.Module):
    """Inference masks of one image (Fig. 1): Eq. 1 at the peak cells, resize, threshold (and
    optionally crop to the boxes). A module so that benchmarks can time and count it."""

    def __init__(self, stride: int, threshold: float = 0.5, crop_to_box: bool = False):
        super().__init__()
        self.stride, self.threshold, self.crop_to_box = stride, threshold, crop_to_box

    def forward(self, coefficients, spanning_set, cells, boxes, input_size, output_size):
        """(N, h, w) bool masks for the flat peak ``cells`` of (K, H, W) ``coefficients`` and
        ``spanning_set``; ``boxes`` (N, 4) in the output frame are used with ``crop_to_box``."""
        logits = assemble_masks(gather_coefficients(coefficients, cells), spanning_set)
        return masks_to_image(logits, self.stride, input_size, output_size, self.threshold,
                              boxes if self.crop_to_box else None)
