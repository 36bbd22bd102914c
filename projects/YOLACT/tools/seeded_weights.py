"""Deterministic seeded weights, images and targets for reference-equivalence checks.

Pure torch + numpy + zlib (no rtinst / detectron2 / yolact imports), so the same
function can be imported both by ``reference_outputs.py`` (which runs the original
dbolya/yolact code) and by our own tests, and both sides get bit-identical inputs.

Weight rule (:func:`seeded_state_dict`)
---------------------------------------
Every tensor is drawn from its own generator,
``torch.Generator().manual_seed(zlib.crc32(name.encode()))``, so its value depends only
on the key name and shape (not on dict order, other keys, or the platform).  The
distribution is chosen from the key's *role*, which is derived from the name and the
shapes of its siblings (keys sharing the same module prefix):

* ``*.num_batches_tracked``: ``0`` (int64).
* normalisation layers (a prefix with ``running_mean``/``running_var``, or whose
  ``weight`` is 1-D):

  - ``weight`` (gamma) ~ U(0.5, 1.0); gamma ~ U(0.05, 0.15) for the BN that closes a
    ResNet residual branch (leaf module ``bn3``), so that 33 residual additions do not
    blow the activations up;
  - ``bias`` (beta) ~ N(0, 0.1^2);
  - ``running_mean`` ~ N(0, 0.1^2);
  - ``running_var`` ~ U(0.5, 1.5) (strictly positive).

* weights with >= 2 dims (convolutions, linear layers): "zero-DC" He-normal.  Draw
  ``z ~ N(0, 1)`` of the full shape, remove each output filter's mean over its fan-in
  and rescale by ``sqrt(fan_in / (fan_in - 1))`` (unit variance again), then multiply
  by ``gain * sqrt(2 / fan_in)`` with ``fan_in = prod(shape[1:])``.  Removing the mean
  matters: ReLU features have positive means, and plain random filters turn them into
  large per-channel constants, which made every prototype ~constant and every mask
  empty or full.  Gains:

  - ``gain = 2.0`` for the class-confidence predictor (``conf_layer``), so softmax scores
    spread well above the uniform 1/81 level (varied scores, well over the 0.05 threshold);
  - ``gain = 2.0`` for deformable-conv offset/modulation predictors
    (``conv_offset_mask``): their input is small, and this gives sampling offsets of
    about 0.5 px on average (a few px at most) and modulation masks visibly away from
    0.5, so a wrong offset layout would show;
  - ``gain = 1`` otherwise (which leaves ``tanh`` mask coefficients unsaturated).

* biases (any other key, normally 1-D): ``N(0, 0.01^2)``, except inside ``maskiou_net``
  (YOLACT++'s mask-IoU head), where biases ~ U(0.1, 0.2): that head sees box-cropped
  masks that are mostly zeros, and with zero-DC filters and small biases its
  ReLU/max-pool chain would return 0 for almost every detection.

Which role a key has is matched on a dotted name component (``conf_layer`` in
``prediction_layers.0.conf_layer.weight``), so the rule only depends on the names as the
reference spells them (see ``../shared/reference/checkpoint_keys``).

:func:`seeded_image` and :func:`seeded_targets` derive everything from a seeded
generator as well; see their docstrings.
"""
import hashlib
import math
import zlib

import numpy as np
import torch

__all__ = [
    "read_key_spec",
    "write_key_spec",
    "seeded_state_dict",
    "seeded_tensor",
    "seeded_image",
    "seeded_targets",
    "state_dict_digest",
    "array_digest",
    "MIN_OBJECT_SIDE",
]

# Gains of the He-normal rule for conv/linear weights, matched on a name component.
_WEIGHT_GAINS = {
    "conv_offset_mask": 2.0,
    "conf_layer": 2.0,
}
_RESIDUAL_CLOSING_NORMS = ("bn3",)
# Heads whose input is mostly zeros (YOLACT++'s mask-IoU net sees box-cropped masks):
# with zero-DC filters their ReLU chain would output ~0, so their biases are positive.
_POSITIVE_BIAS_MODULES = ("maskiou_net",)
_BIAS_STD = 0.01

MIN_OBJECT_SIDE = 60
MAX_OBJECT_SIDE = 220


# ----------------------------------------------------------------------------- key specs
def _parse_shape(text):
    text = text.strip()
    if text in ("scalar", ""):
        return ()
    return tuple(int(v) for v in text.split("x"))


def _format_shape(shape):
    shape = tuple(shape)
    return "scalar" if len(shape) == 0 else "x".join(str(int(v)) for v in shape)


def read_key_spec(path):
    """Read a ``# key<TAB>shape<TAB>dtype`` TSV into ``[(name, shape, dtype), ...]``.

    ``shape`` is a tuple of ints (``()`` for ``scalar``), ``dtype`` the string as
    written (``float32``, ``int64``...).  Blank lines and ``#`` lines are skipped.
    """
    spec = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError("bad key-spec line in %s: %r" % (path, line))
            name, shape, dtype = parts
            spec.append((name, _parse_shape(shape), dtype.strip()))
    return spec


def write_key_spec(path, state_dict):
    """Write ``state_dict``'s names/shapes/dtypes in the :func:`read_key_spec` format."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("# key\tshape\tdtype\n")
        for name, tensor in state_dict.items():
            dtype = str(tensor.dtype).replace("torch.", "")
            f.write("%s\t%s\t%s\n" % (name, _format_shape(tensor.shape), dtype))


# ----------------------------------------------------------------------------- weights
def _generator(name):
    return torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))


def _split(name):
    if "." in name:
        prefix, leaf = name.rsplit(".", 1)
    else:
        prefix, leaf = "", name
    return prefix, leaf


def _is_norm_prefix(prefix, siblings):
    leaves = siblings.get(prefix, {})
    if "running_mean" in leaves or "running_var" in leaves:
        return True
    weight = leaves.get("weight")
    return weight is not None and len(weight) == 1


def _weight_gain(name):
    parts = name.split(".")
    gain = 1.0
    for part, g in _WEIGHT_GAINS.items():
        if part in parts:
            gain = g
    return gain


def seeded_tensor(name, shape, dtype="float32", siblings=None):
    """One tensor of the rule described in the module docstring.

    ``siblings`` maps a module prefix to ``{leaf: shape}`` and is only used to tell
    normalisation parameters from conv/linear ones; without it, a 1-D ``weight`` or a
    ``running_*`` key is a norm parameter and everything else is conv/linear.
    """
    shape = tuple(int(s) for s in shape)
    prefix, leaf = _split(name)
    if siblings is None:
        siblings = {prefix: {leaf: shape}}
    tdtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=tdtype)

    g = _generator(name)
    if _is_norm_prefix(prefix, siblings) and leaf in ("weight", "bias", "running_mean", "running_var"):
        module = prefix.rsplit(".", 1)[-1]
        if leaf == "weight":
            lo, hi = (0.05, 0.15) if module in _RESIDUAL_CLOSING_NORMS else (0.5, 1.0)
            t = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
        elif leaf == "running_var":
            t = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        else:  # bias, running_mean
            t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        std = _weight_gain(name) * math.sqrt(2.0 / fan_in)
        t = torch.randn(shape, generator=g, dtype=torch.float64).reshape(shape[0], -1)
        if fan_in > 1:
            # zero-DC filters: remove each output filter's mean over its fan-in (and restore
            # the unit variance), so that ReLU features' positive means do not turn into
            # large per-channel offsets (which made all prototypes ~constant and all
            # masks empty or full)
            t = (t - t.mean(1, keepdim=True)) * math.sqrt(fan_in / (fan_in - 1.0))
        t = (std * t).reshape(shape)
    elif any(part in _POSITIVE_BIAS_MODULES for part in name.split(".")):
        t = 0.1 + 0.1 * torch.rand(shape, generator=g, dtype=torch.float64)
    else:
        t = _BIAS_STD * torch.randn(shape, generator=g, dtype=torch.float64)
    return t.to(tdtype)


def seeded_state_dict(spec):
    """Deterministic state dict for ``spec`` (as returned by :func:`read_key_spec`).

    Returns an ordered ``{name: tensor}`` in spec order; each tensor depends only on its
    name and shape (and on the shapes of its module siblings, which decide whether a key
    is a normalisation parameter).  See the module docstring for the distributions.
    """
    siblings = {}
    for name, shape, _ in spec:
        prefix, leaf = _split(name)
        siblings.setdefault(prefix, {})[leaf] = tuple(shape)
    return {name: seeded_tensor(name, shape, dtype, siblings) for name, shape, dtype in spec}


def state_dict_digest(state_dict):
    """sha256 (hex) over every ``name``, dtype, shape and raw little-endian bytes, in
    the dict's order: a cheap bit-exactness check of :func:`seeded_state_dict`."""
    h = hashlib.sha256()
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        h.update(name.encode("utf-8"))
        h.update(str(t.dtype).encode("ascii"))
        h.update(str(tuple(t.shape)).encode("ascii"))
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def array_digest(array):
    """sha256 (hex) of a numpy array's dtype, shape and C-order bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode("ascii"))
    h.update(str(a.shape).encode("ascii"))
    h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- images
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
