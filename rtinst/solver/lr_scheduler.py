"""Detectron2's LR schedulers as rtinst registers them (``SOLVER.LR_SCHEDULER_NAME``
"WarmupMultiStepLR", "WarmupCosineLR")."""
import logging

from detectron2.solver import build_lr_scheduler

logger = logging.getLogger(__name__)


def build_detectron2_lr_scheduler(cfg, optimizer):
    """Detectron2's ``build_lr_scheduler``, ``SOLVER.STEPS`` at or after ``SOLVER.MAX_ITER``
    left out with a warning naming them (Detectron2 fails on a step equal to it)."""
    steps = tuple(s for s in cfg.SOLVER.STEPS if s < cfg.SOLVER.MAX_ITER)
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR" and steps != tuple(cfg.SOLVER.STEPS):
        logger.warning(
            "SOLVER.STEPS %s: step(s) %s at or after SOLVER.MAX_ITER %d never happen and are "
            "left out", tuple(cfg.SOLVER.STEPS), tuple(cfg.SOLVER.STEPS)[len(steps):],
            cfg.SOLVER.MAX_ITER,
        )
        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.STEPS = steps
    return build_lr_scheduler(cfg, optimizer)
