from .build import build_coco_evaluator, build_evaluator
from .coco_evaluation import COCOEvaluator

__all__ = ["COCOEvaluator", "build_coco_evaluator", "build_evaluator"]
