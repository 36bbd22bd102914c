"""COCO evaluation on the fast path: perfect predictions score AP 100, none score AP 0."""
import json

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import Boxes, Instances

from rtinst.evaluation import COCOEvaluator

BOXES = {1: [[10, 10, 30, 20], [50, 40, 20, 35]], 2: [[5, 60, 40, 30]]}  # image id -> XYWH
CLASSES = {1: [1, 2], 2: [2]}  # category ids (1-based, as in the json)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalset")
    anns = []
    for image_id, boxes in BOXES.items():
        for box, cat in zip(boxes, CLASSES[image_id]):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
    coco = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in BOXES],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": anns,
    }
    (root / "ann.json").write_text(json.dumps(coco))
    name = "rtinst_test_evalset"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, str(root / "ann.json"), str(root))
    return name


def _predictions(dataset_name, perfect):
    outputs = []
    for record in DatasetCatalog.get(dataset_name):
        inst = Instances((record["height"], record["width"]))
        if perfect:
            xywh = torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float32)
            inst.pred_boxes = Boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1))
            inst.scores = torch.ones(len(xywh))
            inst.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
        else:
            inst.pred_boxes = Boxes(torch.zeros(0, 4))
            inst.scores = torch.zeros(0)
            inst.pred_classes = torch.zeros(0, dtype=torch.int64)
        outputs.append(({"image_id": record["image_id"]}, {"instances": inst}))
    return outputs


def _evaluate(dataset_name, perfect, tmp_path):
    evaluator = COCOEvaluator(dataset_name, output_dir=str(tmp_path))
    evaluator.reset()
    for inp, out in _predictions(dataset_name, perfect):
        evaluator.process([inp], [out])
    return evaluator.evaluate()["bbox"]


def test_perfect_predictions_score_100(dataset, tmp_path):
    res = _evaluate(dataset, True, tmp_path)
    assert MetadataCatalog.get(dataset).thing_classes == ["a", "b"]
    assert res["AP"] == pytest.approx(100.0)
    assert res["AP50"] == pytest.approx(100.0)
    assert res["AP-a"] == pytest.approx(100.0) and res["AP-b"] == pytest.approx(100.0)


def test_no_predictions_score_0(dataset, tmp_path):
    res = _evaluate(dataset, False, tmp_path)
    assert res["AP"] == 0.0 and res["AP50"] == 0.0


def test_evaluator_uses_the_fast_path(dataset, tmp_path):
    assert COCOEvaluator(dataset, output_dir=str(tmp_path))._use_fast_impl


@pytest.fixture(scope="module")
def one_object_dataset(tmp_path_factory):
    """One 100x100 image with one 20x10 rectangle (box and polygon) of category 1."""
    root = tmp_path_factory.mktemp("one_object")
    coco = {
        "images": [{"id": 1, "file_name": "1.png", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 10],
                         "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]], "area": 200,
                         "iscrowd": 0}],
    }
    (root / "ann.json").write_text(json.dumps(coco))
    name = "rtinst_test_one_object"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, str(root / "ann.json"), str(root))
    DatasetCatalog.get(name)  # loading sets the category id mapping, as a test loader does
    return name


def test_mask_ap_ranks_by_mask_scores_and_box_ap_by_scores(one_object_dataset, tmp_path):
    # two detections: the right one with the lower box score but the higher mask score, and a
    # wrong one (elsewhere) with the higher box score
    masks = torch.zeros(2, 100, 100, dtype=torch.bool)
    masks[0, 10:20, 10:30] = True
    masks[1, 60:70, 60:80] = True
    inst = Instances((100, 100), pred_boxes=Boxes(torch.tensor([[10., 10, 30, 20],
                                                                [60, 60, 80, 70]])),
                     scores=torch.tensor([0.5, 0.9]), pred_classes=torch.tensor([0, 0]),
                     pred_masks=masks, mask_scores=torch.tensor([0.45, 0.1]))
    evaluator = COCOEvaluator(one_object_dataset, output_dir=str(tmp_path))
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [{"instances": inst}])
    results = evaluator.evaluate()
    # ranked by box score the wrong detection comes first: precision 1/2 at full recall
    assert results["bbox"]["AP"] == pytest.approx(50.0, abs=0.5)
    assert results["segm"]["AP"] == pytest.approx(100.0)
