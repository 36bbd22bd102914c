"""``build_optimizer``: ``SOLVER.OPTIMIZER`` (Detectron2's SGD, or AdamW) on the parameter groups
of ``get_optimizer_params``, with ``SOLVER.CLIP_GRADIENTS``."""
import torch

from rtinst.errors import ConfigError

from .clipping import maybe_add_gradient_clipping
from .param_groups import get_optimizer_params, parse_param_patterns


def _sgd(solver):
    return torch.optim.SGD, {"momentum": solver.MOMENTUM, "nesterov": solver.NESTEROV}


def _adamw(solver):
    return torch.optim.AdamW, {"betas": tuple(solver.ADAMW.BETAS), "eps": solver.ADAMW.EPS}


# SOLVER.OPTIMIZER -> (solver config -> (optimizer class, its own keyword arguments))
OPTIMIZERS = {"SGD": _sgd, "ADAMW": _adamw}


def build_optimizer(cfg, model):
    """The optimizer ``SOLVER.OPTIMIZER`` names over ``model``'s trainable parameters, LR
    ``SOLVER.BASE_LR`` and weight decay ``SOLVER.WEIGHT_DECAY`` with the groups' exceptions
    (``get_optimizer_params``); "SGD" is Detectron2's ``build_optimizer``; "ADAMW" leaves the
    biases undecayed when ``SOLVER.WEIGHT_DECAY_BIAS`` is None (Detectron2: ``WEIGHT_DECAY``). A ``ConfigError``
    naming the key for an unknown optimizer or a bad setting."""
    solver = cfg.SOLVER
    if solver.OPTIMIZER not in OPTIMIZERS:
        raise ConfigError(f"SOLVER.OPTIMIZER: unknown optimizer {solver.OPTIMIZER!r}, expected "
                          f"one of {', '.join(OPTIMIZERS)}")
    optimizer_type, arguments = OPTIMIZERS[solver.OPTIMIZER](solver)
    weight_decay_bias = solver.WEIGHT_DECAY_BIAS
    if weight_decay_bias is None and solver.OPTIMIZER == "ADAMW":
        weight_decay_bias = 0.0  # AdamW's biases are not decayed unless the config says so
    params = get_optimizer_params(
        model, base_lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM, bias_lr_factor=solver.BIAS_LR_FACTOR,
        weight_decay_bias=weight_decay_bias, weight_decay_embed=solver.WEIGHT_DECAY_EMBED,
        backbone_multiplier=solver.BACKBONE_MULTIPLIER,
        patterns=parse_param_patterns(solver.PARAM_GROUPS),
    )
    return maybe_add_gradient_clipping(cfg, optimizer_type)(
        params, lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY, **arguments
    )
