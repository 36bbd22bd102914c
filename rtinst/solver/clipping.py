"""Gradient clipping (``SOLVER.CLIP_GRADIENTS``): Detectron2's per-parameter "value" and "norm",
and "full_model": the norm of all gradients together clipped to ``CLIP_VALUE``
(``clip_grad_norm_`` over every parameter, as DETR-style models train)."""
import functools

import torch
from detectron2.solver.build import (
    _generate_optimizer_class_with_gradient_clipping,
    maybe_add_gradient_clipping as _per_parameter_clipping,
)

from rtinst.errors import ConfigError

CLIP_TYPES = ("value", "norm", "full_model")


def maybe_add_gradient_clipping(cfg, optimizer_type):
    """``optimizer_type``, or a subclass of it whose ``step`` clips the gradients first, as
    ``SOLVER.CLIP_GRADIENTS`` says; a ``ConfigError`` naming the key for a bad setting."""
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return optimizer_type
    if clip.CLIP_TYPE not in CLIP_TYPES:
        raise ConfigError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE: unknown type {clip.CLIP_TYPE!r}, "
                          f"expected one of {', '.join(CLIP_TYPES)}")
    if clip.CLIP_VALUE <= 0:
        raise ConfigError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0, got {clip.CLIP_VALUE}")
    if clip.CLIP_TYPE != "full_model":
        return _per_parameter_clipping(cfg, optimizer_type)
    clip_all = functools.partial(
        torch.nn.utils.clip_grad_norm_, max_norm=clip.CLIP_VALUE, norm_type=clip.NORM_TYPE
    )
    return _generate_optimizer_class_with_gradient_clipping(optimizer_type, global_clipper=clip_all)
