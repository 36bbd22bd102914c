"""Meta-architectures registered in Detectron2's ``META_ARCH_REGISTRY``."""
from .one_stage_detector import OneStageDetector, postprocess_detections
from .preprocessing import normalised_batch

__all__ = ["OneStageDetector", "normalised_batch", "postprocess_detections"]
