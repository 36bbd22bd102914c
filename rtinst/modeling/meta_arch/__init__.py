"""Meta-architectures registered in Detectron2's ``META_ARCH_REGISTRY``."""
from .one_stage_detector import OneStageDetector, postprocess_detections

__all__ = ["OneStageDetector", "postprocess_detections"]
