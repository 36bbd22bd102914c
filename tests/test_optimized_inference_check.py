"""tools/optimized_inference_check.py: the two paths' detections paired and their differences."""
import argparse
import importlib.util
from pathlib import Path

import torch

from detectron2.structures import Boxes, Instances

TOOL = Path(__file__).resolve().parents[1] / "tools/optimized_inference_check.py"
spec = importlib.util.spec_from_file_location("optimized_inference_check", TOOL)
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def _instances(boxes, scores, classes, masks):
    return Instances((8, 8), pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                     scores=torch.tensor(scores), pred_classes=torch.tensor(classes),
                     pred_masks=torch.tensor(masks, dtype=torch.bool))


def test_pairs_by_class_score_and_box_and_counts_the_unpaired():
    full, left = [[1] * 8] * 8, [[1] * 4 + [0] * 4] * 8
    built = _instances([[0, 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6]], [0.9, 0.8, 0.5], [0, 0, 1],
                       [full, full, full])
    # in another order, one box moved by 0.25 px, a mask halved, the class-1 instance lost
    fast = _instances([[1, 1, 5, 5.25], [0, 0, 4, 4], [0, 0, 8, 8]], [0.8, 0.9, 0.4], [0, 0, 2],
                      [left, full, full])
    assert check.pair_instances(built, fast, 0.05) == [(0, 1), (1, 0)]  # rtinst.export's rule
    totals = {"detections": [0, 0], "pairs": 0, "unpaired_above": [0, 0]}
    check.compare(built, fast, argparse.Namespace(score_tol=0.05, unpaired_score=0.3), totals)
    assert totals["pairs"] == 2 and totals["detections"] == [3, 3]
    assert totals["unpaired_above"] == [1, 1]  # 0.5 of class 1, 0.4 of class 2
    assert totals["max_score_diff"] == 0.0 and totals["max_box_px_diff"] == 0.25
    assert totals["min_mask_iou"] == 0.5 and totals["pairs_mask_iou_below_0.9"] == 1
