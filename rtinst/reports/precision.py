"""Per-class AP and precision-recall curves from COCO's accumulated precision array (saved by
``rtinst.evaluation.COCOEvaluator`` as ``precision_<task>.npz``): the numbers behind the
evaluator's AP, so that the curves' areas are its APs."""
from dataclasses import dataclass

import numpy as np

IOU_SETTINGS = ("0.5", "0.5:0.95")
ALL_CLASSES = "all classes"


@dataclass
class PrecisionArray:
    """``precision[t, r, k]``: the interpolated precision at IoU threshold ``t`` and recall
    threshold ``r`` for class ``k``, over all areas at the largest max-detections limit (COCO's
    ``eval["precision"][:, :, :, 0, -1]``); -1 where the class has no ground truth."""

    precision: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    class_names: list

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as saved:
            return cls(saved["precision"][:, :, :, 0, -1], saved["iou_thresholds"],
                       saved["recall_thresholds"], [str(n) for n in saved["class_names"]])

    def _iou_rows(self, iou):
        if iou == "0.5:0.95":
            return slice(None)
        index = np.flatnonzero(np.isclose(self.iou_thresholds, float(iou)))
        if not len(index):
            raise ValueError(f"IoU {iou} is not one of the evaluation's thresholds "
                             f"{self.iou_thresholds.tolist()}")
        return slice(index[0], index[0] + 1)

    def has_ground_truth(self, k):
        return bool((self.precision[:, :, k] > -1).any())

    def curve(self, iou, k=None):
        """Precision at each recall threshold for class ``k`` (None: the mean over the classes
        with ground truth, as COCO's AP averages them), averaged over the IoU thresholds of
        ``iou`` ("0.5" or "0.5:0.95"); None when there is no ground truth."""
        block = self.precision[self._iou_rows(iou)]
        classes = [k] if k is not None else range(block.shape[2])
        kept = [c for c in classes if (block[:, :, c] > -1).all()]
        if not kept:
            return None
        return block[:, :, kept].mean(axis=(0, 2))

    def average_precision(self, iou, k=None):
        """AP in percent, as Detectron2 / COCO compute it: the mean of the precision over the
        recall (and IoU) thresholds; NaN without ground truth."""
        block = self.precision[self._iou_rows(iou)]
        block = block if k is None else block[:, :, k]
        valid = block[block > -1]
        return float(valid.mean() * 100) if valid.size else float("nan")
