"""YolactEdge's flow pretraining (the reference trains FlowNetMini alone on FlyingChairs before the
video training): here the pairs are made from still images moved by a known random affine
motion, and the loss is the reference's end-point error in its flow units.

For an image I and an affine map A (rotation, isotropic scale about the centre, translation), the
current frame is ``I(A p)`` and the keyframe ``I``: the flow from the current frame to the
keyframe is ``A p - p``, exact at every pixel (zero padding outside the image, as a camera
moving over a scene).
"""
import math
from typing import List, Tuple

import torch
from torch.nn import functional as F

__all__ = ["affine_pairs", "end_point_error", "held_out_end_point_errors",
           "pixels_to_reference_units"]


def pixels_to_reference_units(flow: torch.Tensor) -> torch.Tensor:
    """A flow in pixels of an (H, W) image in the reference's units: ``flow * 2 / (W, H) * 8``
    (its FlyingChairs loader's conversion)."""
    height, width = flow.shape[-2:]
    return flow * flow.new_tensor([16.0 / width, 16.0 / height]).view(1, 2, 1, 1)


def affine_pairs(images: torch.Tensor, max_rotation: float, max_scale: float,
                 max_translation: float, generator: torch.Generator = None
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """For (N, C, H, W) ``images`` (the keyframes): the current frames ``I(A p)`` (bilinear, zero
    outside) and the (N, 2, H, W) flow ``A p - p`` in pixels, A drawn per image uniformly within
    +-``max_rotation`` degrees, a scale in 1 +- ``max_scale`` and a shift of +-``max_translation``
    of each side."""
    n, _, height, width = images.shape
    draw = lambda bound: (torch.rand(n, generator=generator) * 2 - 1) * bound  # noqa: E731
    angle, scale = draw(math.radians(max_rotation)), 1 + draw(max_scale)
    shift = torch.stack([draw(max_translation) * width, draw(max_translation) * height], 1)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                            torch.arange(width, dtype=torch.float32), indexing="ij")
    cx, cy = (width - 1) / 2, (height - 1) / 2
    x, y = xs[None] - cx, ys[None] - cy
    moved_x = cos[:, None, None] * x - sin[:, None, None] * y + cx + shift[:, 0, None, None]
    moved_y = sin[:, None, None] * x + cos[:, None, None] * y + cy + shift[:, 1, None, None]
    flow = torch.stack([moved_x - xs, moved_y - ys], dim=1).to(images.device)
    grid = torch.stack([2 * moved_x / (width - 1) - 1, 2 * moved_y / (height - 1) - 1], dim=3)
    current = F.grid_sample(images, grid.to(images), mode="bilinear", padding_mode="zeros",
                            align_corners=True)
    return current, flow


def end_point_error(predictions: List[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """The reference's flow loss: over the predicted flows (each (N, 2, h, w)), the mean
    Euclidean distance to the target (same units) resized to that flow's size (bilinear),
    summed."""
    loss = target.new_zeros(())
    for flow in predictions:
        resized = F.interpolate(target, size=flow.shape[-2:], mode="bilinear",
                                align_corners=False)
        loss = loss + torch.norm(flow - resized, dim=1).mean()
    return loss


@torch.no_grad()
def held_out_end_point_errors(model, images: torch.Tensor, seed: int = 0) -> dict:
    """A YolactEdge ``model``'s flow on ``images`` (a normalised (N, 3, H, W) batch, the
    keyframes) moved by its "flow" stage's random motion drawn from ``seed``: the mean end-point
    error (pixels of the input) of its stride-16 flow (the one warping P4) and of a zero flow."""
    current, flow = affine_pairs(images, *model.flow_motion,
                                 generator=torch.Generator().manual_seed(seed))
    stride16 = model.flow_net(model.current_lateral(current), model.current_lateral(images))[0]
    predicted = F.interpolate(stride16.flow, size=images.shape[-2:], mode="bilinear",
                              align_corners=False)
    height, width = images.shape[-2:]
    in_pixels = predicted * predicted.new_tensor([width / 16.0, height / 16.0]).view(1, 2, 1, 1)
    return {"flow_epe_px": torch.norm(in_pixels - flow, dim=1).mean().item(),
            "zero_flow_epe_px": torch.norm(flow, dim=1).mean().item()}
