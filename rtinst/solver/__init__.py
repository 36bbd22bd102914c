"""The optimizer and LR schedules (Detectron2's ``detectron2.solver`` layout): ``SOLVER.OPTIMIZER``
with parameter groups and gradient clipping, and Detectron2's schedulers as rtinst registers
them."""
from .build import OPTIMIZERS, build_optimizer
from .clipping import CLIP_TYPES, maybe_add_gradient_clipping
from .lr_scheduler import build_detectron2_lr_scheduler
from .param_groups import ParamPattern, get_optimizer_params, parse_param_patterns

__all__ = ["CLIP_TYPES", "OPTIMIZERS", "ParamPattern", "build_detectron2_lr_scheduler",
           "build_optimizer", "get_optimizer_params", "maybe_add_gradient_clipping",
           "parse_param_patterns"]
