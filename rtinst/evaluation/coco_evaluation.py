"""COCO evaluation (Detectron2's ``COCOEvaluator`` on the fast C++ path of faster-coco-eval)."""
import logging

from detectron2.evaluation import COCOEvaluator as _D2COCOEvaluator

logger = logging.getLogger(__name__)


class COCOEvaluator(_D2COCOEvaluator):
    """Detectron2's evaluator, except that a model with no detections scores AP 0, which is
    what COCO's definition gives, instead of NaN."""

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if coco_eval is None:
            results = {metric: 0.0 for metric in results}
        return results
