"""Warping features by optical flow (backward warping, as Deep Feature Flow, Zhu et al., CVPR
2017, and YolactEdge, Liu et al., ICRA 2021, carry a keyframe's features to the next frames):
``torch.nn.functional.grid_sample``, bilinear, zero outside the map. Exports to ONNX from opset
16 (GridSample), for the map size of the export (as rtinst's exports are)."""
import torch
import torch.nn.functional as F

__all__ = ["warp"]


def warp(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) ``features`` sampled at the pixels moved by ``flow`` (N, 2, H, W; channel 0
    the horizontal, 1 the vertical displacement, in pixels of this map): ``out[..., y, x] =
    features[..., y + flow[1, y, x], x + flow[0, y, x]]``, bilinear between pixels and 0 beyond
    the map. Pixel i is at the centre of the i-th cell, the first and last pixels at -1 and 1 of
    grid_sample's coordinates (``align_corners=True``), so an integer flow moves whole pixels."""
    if features.dim() != 4 or flow.shape != (features.shape[0], 2) + features.shape[2:]:
        raise ValueError(f"warp: flow must be (N, 2, H, W) for features (N, C, H, W), got flow "
                         f"{tuple(flow.shape)} for features {tuple(features.shape)}")
    height, width = features.shape[2:]
    rows = torch.arange(height, dtype=flow.dtype, device=flow.device)
    cols = torch.arange(width, dtype=flow.dtype, device=flow.device)
    x = cols[None, None, :] + flow[:, 0]
    y = rows[None, :, None] + flow[:, 1]
    grid = torch.stack((2 * x / max(width - 1, 1) - 1, 2 * y / max(height - 1, 1) - 1), dim=3)
    return F.grid_sample(features, grid.to(features.dtype), mode="bilinear",
                         padding_mode="zeros", align_corners=True)
