"""Seeded pictures and ground truth for reference-equivalence checks: a smooth colour field with
a few flat-coloured ellipses and rectangles painted over it (:func:`seeded_image`), and those
objects as boxes, classes, masks and crowd flags (:func:`seeded_targets`). Imports only torch and
numpy (loaded by path by the reference runners)."""
import numpy as np
import torch

__all__ = ["seeded_image", "seeded_targets", "MIN_OBJECT_SIDE", "MAX_OBJECT_SIDE"]

MIN_OBJECT_SIDE = 60
MAX_OBJECT_SIDE = 220


def _ellipse_mask(height, width, cx, cy, ax, ay):
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    return (((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2) <= 1.0


def seeded_targets(seed, height=550, width=550, num_crowd=None):
    """A few (3 or 4) seeded objects for loss checks.

    Returns a dict with

    * ``boxes``: float64 ``[N, 4]`` XYXY in pixels, the *tight* bounding box of the mask
      with exclusive right/bottom edge (``x2 = last column + 1``), COCO style;
    * ``classes``: int64 ``[N]`` 0-based class ids (< 80);
    * ``masks``: uint8 ``[N, H, W]`` binary masks (filled ellipses or rectangles; masks
      of different objects may overlap, each mask is the whole shape);
    * ``iscrowd``: bool ``[N]``.

    Every object has both box sides >= ``MIN_OBJECT_SIDE`` (60 px) and <= about
    ``MAX_OBJECT_SIDE`` (220 px).  At most 4 objects keep the reference's matching at
    <= ~60 positive anchors per image even for YOLACT++'s 9 anchors per location (about
    15-20 positives per object there), far from its 100-mask random subsampling.  ``num_crowd`` objects (default: 1 for even seeds, 0 for odd seeds) are
    marked crowd; the crowd object is the *first* object (so consumers that need
    crowds last, e.g. the reference's training format, must reorder).
    """
    if num_crowd is None:
        num_crowd = 1 if seed % 2 == 0 else 0
    g = torch.Generator().manual_seed(1000003 * int(seed) + 17)

    def uni(lo, hi):
        return lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64).item()

    def integer(lo, hi):  # inclusive lo, exclusive hi
        return int(torch.randint(lo, hi, (), generator=g).item())

    num = integer(3, 5)
    boxes, classes, masks = [], [], []
    max_side = min(MAX_OBJECT_SIDE, height - 2, width - 2)
    while len(masks) < num:
        bw = uni(MIN_OBJECT_SIDE + 4, max_side)
        bh = uni(MIN_OBJECT_SIDE + 4, max_side)
        x0 = uni(1, width - 1 - bw)
        y0 = uni(1, height - 1 - bh)
        shape_kind = integer(0, 2)
        cls = integer(0, 80)
        if shape_kind == 0:
            m = _ellipse_mask(height, width, x0 + bw / 2, y0 + bh / 2, bw / 2, bh / 2)
        else:
            m = np.zeros((height, width), dtype=bool)
            m[int(round(y0)):int(round(y0 + bh)), int(round(x0)):int(round(x0 + bw))] = True
        ys, xs = np.nonzero(m)
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if box[2] - box[0] < MIN_OBJECT_SIDE or box[3] - box[1] < MIN_OBJECT_SIDE:
            continue
        boxes.append(box)
        classes.append(cls)
        masks.append(m.astype(np.uint8))
    iscrowd = np.zeros(num, dtype=bool)
    iscrowd[:num_crowd] = True
    return {
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "classes": np.asarray(classes, dtype=np.int64),
        "masks": np.stack(masks, 0),
        "iscrowd": iscrowd,
    }


def seeded_image(seed, height=550, width=550):
    """A deterministic smooth synthetic BGR picture, uint8 ``(H, W, 3)``.

    A seeded 3x6x6 colour field in [30, 225] is upsampled (bilinear, float64,
    ``align_corners=False``) to ``(H, W)``, plus a low-amplitude seeded 3x24x24 texture;
    then the objects of :func:`seeded_targets` (same seed) are painted over it with
    seeded flat colours, later objects on top.  Computed with torch/numpy only.
    """
    g = torch.Generator().manual_seed(7919 * int(seed) + 3)
    coarse = 30.0 + 195.0 * torch.rand((1, 3, 6, 6), generator=g, dtype=torch.float64)
    fine = 20.0 * (torch.rand((1, 3, 24, 24), generator=g, dtype=torch.float64) - 0.5)
    img = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    img = img + torch.nn.functional.interpolate(fine, size=(height, width), mode="bilinear", align_corners=False)
    img = img[0].permute(1, 2, 0).numpy().copy()
    targets = seeded_targets(seed, height, width)
    colors = 255.0 * torch.rand((len(targets["masks"]), 3), generator=g, dtype=torch.float64).numpy()
    for m, c in zip(targets["masks"], colors):
        img[m.astype(bool)] = c
    return np.clip(np.floor(img + 0.5), 0, 255).astype(np.uint8)
