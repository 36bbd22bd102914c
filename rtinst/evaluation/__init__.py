from .build import build_coco_evaluator, build_evaluator, build_ytvis_evaluator
from .coco_evaluation import COCOEvaluator
from .ytvis_evaluation import YTVISEvaluator

__all__ = ["COCOEvaluator", "YTVISEvaluator", "build_coco_evaluator", "build_evaluator",
           "build_ytvis_evaluator"]
