"""The tracker's motion prior: each track's box centre moves at a constant velocity (the mean of
ByteTrack's constant-velocity Kalman filter, Zhang et al., ECCV 2022, Sec. 3), estimated from
its last matches; a track's predicted region is its last box and association mask moved by that
velocity times the frames since it was last seen (``MODEL.TRACKER.MOTION "velocity"``; "none":
the last region as it was)."""
import torch
from detectron2.structures import Boxes, Instances

__all__ = ["MOTIONS", "VELOCITY_SMOOTHING", "moved", "new_velocity"]

MOTIONS = ("velocity", "none")
VELOCITY_SMOOTHING = 0.5  # the weight of the newest displacement in the velocity estimate


def new_velocity(velocity, last_box, box, frames):
    """(2,) the velocity after a track's box ``last_box`` (4,) is seen again as ``box`` ``frames``
    frames later; ``velocity`` None for a track seen once before."""
    last_center, center = Boxes(torch.stack([last_box, box])).get_centers()
    step = (center - last_center) / frames
    return step if velocity is None else (1 - VELOCITY_SMOOTHING) * velocity + \
        VELOCITY_SMOOTHING * step


def _shifted(grid, dx, dy):
    """The (1, h, w) ``grid`` moved by whole cells (dx right, dy down), zeros coming in."""
    out = torch.zeros_like(grid)
    h, w = grid.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[:, max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        grid[:, max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
    return out


def moved(instance, shift, stride):
    """The one-instance ``instance`` with its box (and ``association_masks``, whose grid has
    step ``stride``) moved by ``shift`` (2,) pixels; its other fields shared."""
    result = Instances(instance.image_size, **instance.get_fields())
    result.pred_boxes = Boxes(instance.pred_boxes.tensor + shift.repeat(2))
    if instance.has("association_masks"):
        dx, dy = (int(round(float(s) / stride)) for s in shift)
        result.association_masks = _shifted(instance.association_masks, dx, dy)
    return result
