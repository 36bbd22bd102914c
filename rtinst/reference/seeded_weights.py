"""Name-seeded weights: every parameter and buffer drawn from its own generator, seeded with the
CRC-32 of its name, so the same weights can be built for a reference implementation and for ours
from the reference's key names and shapes alone (``../shared/reference/checkpoint_keys``),
without shipping a checkpoint. Imports only torch and numpy (loaded by path by the runners).

Rule (:func:`seeded_tensor`), by the key's role, decided from its name and its siblings (the keys
sharing its module prefix):

* ``*.num_batches_tracked``: 0.
* normalisation layers (a prefix with ``running_mean``/``running_var``, or a 1-D ``weight``):
  gamma ~ U(0.5, 1.0) (U(0.05, 0.15) for a norm that closes a residual branch, so that deep
  residual stacks keep their scale), beta ~ N(0, 0.1^2), running mean ~ N(0, 0.1^2), running
  variance ~ U(0.5, 1.5).
* weights with >= 2 dims: "zero-DC" He-normal: N(0, 1) with each output filter's mean over its
  fan-in removed (unit variance restored), times ``gain * sqrt(2 / fan_in)``. Removing the mean
  keeps ReLU features' positive means from turning into large per-channel constants.
* other keys (biases): N(0, 0.01^2), or U(lo, hi) inside a module named in ``bias_ranges``.

A :class:`SeedingRule` names the modules with another gain, the residual-closing norms and the
biases with a range. A name "part" is a run of dotted components: ``conv3.norm`` matches
``backbone.bottom_up.res2.0.conv3.norm.weight``, ``conf_layer`` matches
``prediction_layers.0.conf_layer.bias``.
"""
import hashlib
import math
import zlib
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

__all__ = [
    "SeedingRule",
    "read_key_spec",
    "write_key_spec",
    "seeded_tensor",
    "seeded_state_dict",
    "state_dict_digest",
    "array_digest",
    "DETECTRON2_RULE",
]

_BIAS_STD = 0.01


@dataclass(frozen=True)
class SeedingRule:
    """Where a model departs from the default rule (see the module docstring).

    Attributes:
        weight_gains: (name part, gain) of the He-normal rule; the last match wins.
        residual_closing_norms: name parts of the norms that close a residual branch.
        bias_ranges: (name part, (lo, hi)): biases drawn from U(lo, hi) instead of N(0, 0.01^2).
    """

    weight_gains: Tuple[Tuple[str, float], ...] = ()
    residual_closing_norms: Tuple[str, ...] = ()
    bias_ranges: Tuple[Tuple[str, Tuple[float, float]], ...] = ()


def _has_part(name: str, part: str) -> bool:
    return f".{part}." in f".{name}."


# ----------------------------------------------------------------------------- key specs
def _parse_shape(text):
    text = text.strip()
    if text in ("scalar", ""):
        return ()
    return tuple(int(v) for v in text.split("x"))


def _format_shape(shape):
    shape = tuple(shape)
    return "scalar" if len(shape) == 0 else "x".join(str(int(v)) for v in shape)


def read_key_spec(path) -> List[Tuple[str, Tuple[int, ...], str]]:
    """Read a ``# key<TAB>shape<TAB>dtype`` TSV into ``[(name, shape, dtype), ...]``.

    ``shape`` is a tuple of ints (``()`` for ``scalar``), ``dtype`` as written (``float32``...).
    Blank lines and ``#`` lines are skipped.
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


def write_key_spec(path, state_dict) -> None:
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


def seeded_tensor(name: str, shape: Sequence[int], dtype="float32", rule=SeedingRule(),
                  siblings: Dict[str, Dict[str, tuple]] = None) -> torch.Tensor:
    """One tensor of the rule in the module docstring.

    ``siblings`` maps a module prefix to ``{leaf: shape}`` and only tells normalisation
    parameters from conv/linear ones; without it, a 1-D ``weight`` or a ``running_*`` key is a
    norm parameter and everything else conv/linear.
    """
    shape = tuple(int(s) for s in shape)
    prefix, leaf = _split(name)
    if siblings is None:
        siblings = {prefix: {leaf: shape}}
    tdtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=tdtype)

    g = _generator(name)
    bias_range = [r for part, r in rule.bias_ranges if _has_part(name, part)]
    if _is_norm_prefix(prefix, siblings) and leaf in ("weight", "bias", "running_mean", "running_var"):
        if leaf == "weight":
            closing = any(_has_part(prefix, part) for part in rule.residual_closing_norms)
            lo, hi = (0.05, 0.15) if closing else (0.5, 1.0)
            t = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
        elif leaf == "running_var":
            t = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        else:  # bias, running_mean
            t = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif len(shape) >= 2:
        gain = 1.0
        for part, part_gain in rule.weight_gains:
            if _has_part(name, part):
                gain = part_gain
        fan_in = int(np.prod(shape[1:]))
        std = gain * math.sqrt(2.0 / fan_in)
        t = torch.randn(shape, generator=g, dtype=torch.float64).reshape(shape[0], -1)
        if fan_in > 1:  # zero-DC filters, unit variance again
            t = (t - t.mean(1, keepdim=True)) * math.sqrt(fan_in / (fan_in - 1.0))
        t = (std * t).reshape(shape)
    elif bias_range:
        lo, hi = bias_range[-1]
        t = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    else:
        t = _BIAS_STD * torch.randn(shape, generator=g, dtype=torch.float64)
    return t.to(tdtype)


def seeded_state_dict(spec, rule: SeedingRule = SeedingRule()) -> Dict[str, torch.Tensor]:
    """Deterministic state dict for ``spec`` (as returned by :func:`read_key_spec`), in spec
    order; each tensor depends only on its name and shape (and its siblings' shapes)."""
    siblings = {}
    for name, shape, _ in spec:
        prefix, leaf = _split(name)
        siblings.setdefault(prefix, {})[leaf] = tuple(shape)
    return {name: seeded_tensor(name, shape, dtype, rule, siblings) for name, shape, dtype in spec}


def state_dict_digest(state_dict) -> str:
    """sha256 (hex) over every name, dtype, shape and raw little-endian bytes, in order."""
    h = hashlib.sha256()
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        h.update(name.encode("utf-8"))
        h.update(str(t.dtype).encode("ascii"))
        h.update(str(tuple(t.shape)).encode("ascii"))
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def array_digest(array) -> str:
    """sha256 (hex) of a numpy array's dtype, shape and C-order bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode("ascii"))
    h.update(str(a.shape).encode("ascii"))
    h.update(a.tobytes())
    return h.hexdigest()


# Detectron2 models (AdelaiDet's and centermask2's, and ours, which share their names):
# * the stem's first conv (ResNet ``stem.conv1``, VoVNet ``stem_1/conv``) gains 1/64: the
#   inputs are Caffe-normalised (PIXEL_STD 1, pixel spread ~60), so every layer keeps unit scale
#   and eval-mode BatchNorm heads with seeded statistics do not saturate;
# * ResNet bottlenecks close their residual branch with ``conv3.norm``;
# * FCOS: the classification layer gains 0.5 with a bias near its focal-loss prior (-log(99) =
#   -4.6), so that few locations pass the configs' 0.05 threshold and scores spread; the box
#   regression bias U(1, 3) (distances of 1-3 strides, boxes crossing the border at coarse
#   levels); the per-level scales U(0.9, 1.1).
DETECTRON2_RULE = SeedingRule(
    weight_gains=(("stem.conv1", 1 / 64), ("stem_1/conv", 1 / 64), ("cls_logits", 1.0)),
    residual_closing_norms=("conv3.norm",),
    bias_ranges=(("cls_logits", (-5.0, -4.0)), ("bbox_pred", (1.0, 3.0)), ("scales", (0.9, 1.1))),
)
