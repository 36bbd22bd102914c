"""COCO evaluation (Detectron2's ``COCOEvaluator`` on the fast C++ path of faster-coco-eval)."""
import copy
import logging
import os

import numpy as np

from detectron2.evaluation import COCOEvaluator as _D2COCOEvaluator

logger = logging.getLogger(__name__)


def _with_scores_of(predictions, task):
    """A copy of ``predictions`` where, for "segm", each result's score is its "mask_score"."""
    predictions = copy.deepcopy(predictions)
    if task == "segm":
        for prediction in predictions:
            for result in prediction.get("instances", []):
                result["score"] = result.get("mask_score", result["score"])
    return predictions


class COCOEvaluator(_D2COCOEvaluator):
    """Detectron2's evaluator, except that
    - a model with no detections scores AP 0, which is what COCO's definition gives, not NaN;
    - instances with ``mask_scores`` (mask scoring, e.g. CenterMask) are ranked by them for
      mask AP, while box AP keeps ranking by ``scores``;
    - with an ``output_dir``, each task's precision array (IoU x recall x class x area x max
      detections, COCO's 101-point interpolation) is saved as ``precision_<task>.npz``
      (``PRECISION_FILE``) for the run's report (``rtinst.reports``)."""

    def process(self, inputs, outputs):
        for inputs_i, output in zip(inputs, outputs):
            count = len(self._predictions)
            super().process([inputs_i], [output])
            instances = output.get("instances")
            if instances is None or len(self._predictions) == count \
                    or not instances.has("mask_scores"):
                continue
            results = self._predictions[-1]["instances"]
            for result, score in zip(results, instances.mask_scores.tolist()):
                result["mask_score"] = score

    def _eval_predictions(self, predictions, img_ids=None):
        has_mask_scores = any(
            "mask_score" in r for p in predictions for r in p.get("instances", [])
        )
        if not has_mask_scores:
            return super()._eval_predictions(predictions, img_ids=img_ids)
        original = self._tasks
        tasks = original or self._tasks_from_predictions(
            [r for p in predictions for r in p.get("instances", [])]
        )
        try:  # one task at a time, each on its own copy ranked by its own scores
            for task in sorted(tasks):
                self._tasks = (task,)
                super()._eval_predictions(_with_scores_of(predictions, task), img_ids=img_ids)
        finally:
            self._tasks = original
        return None

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if coco_eval is None:
            results = {metric: 0.0 for metric in results}
        elif self._output_dir:
            save_precision(os.path.join(self._output_dir, PRECISION_FILE.format(task=iou_type)),
                           coco_eval, class_names)
        return results


PRECISION_FILE = "precision_{task}.npz"


def save_precision(path, coco_eval, class_names):
    """``coco_eval``'s accumulated precision with its IoU and recall thresholds, area ranges,
    max-detection limits and class names (in the order of its class axis)."""
    params = coco_eval.params
    np.savez_compressed(
        path,
        precision=coco_eval.eval["precision"],
        iou_thresholds=np.asarray(params.iouThrs),
        recall_thresholds=np.asarray(params.recThrs),
        area_ranges=np.asarray(params.areaRngLbl),
        max_detections=np.asarray(params.maxDets),
        class_names=np.asarray(class_names if class_names is not None else [], dtype=str),
    )
