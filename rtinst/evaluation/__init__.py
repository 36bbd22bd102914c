from .coco_evaluation import COCOEvaluator

__all__ = ["COCOEvaluator"]
