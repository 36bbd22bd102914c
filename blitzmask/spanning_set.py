"""Masks as linear combinations of the Spanning Set (Eq. 1): M^n = sum_k lambda_{n,k} B^k (rtinst's
``assemble_masks``, YOLACT's prototype assembly), where lambda_n is the Coefficients output at
instance n's centre cell; then (Fig. 1) M^n is resized to the image and thresholded at
sigma(M^n) > 0.5 (rtinst's ``grid_masks_to_image``: one resampling from the grid), optionally
only inside the instance's box."""
import torch
from torch import nn

from rtinst.modeling.layers import assemble_masks

__all__ = ["SpanningSetMasks", "gather_coefficients"]


def gather_coefficients(coefficients: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """(N, K) coefficients lambda_n of one image's (K, H, W) Coefficients at flat ``cells``."""
    return coefficients.reshape(coefficients.shape[0], -1)[:, cells].t()


class SpanningSetMasks(nn.Module):
    """Eq. 1 at inference: the (N, H, W) mask logits on the stride grid of the peaks' (N, K)
    coefficients over the (K, H, W) Spanning Set. A module so that benchmarks can time and
    count it."""

    def forward(self, coefficients: torch.Tensor, spanning_set: torch.Tensor) -> torch.Tensor:
        return assemble_masks(coefficients, spanning_set)
