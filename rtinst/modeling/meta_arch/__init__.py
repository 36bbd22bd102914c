"""Meta-architectures registered in Detectron2's ``META_ARCH_REGISTRY``."""
from .one_stage_detector import OneStageDetector

__all__ = ["OneStageDetector"]
