"""COCO evaluation of an ``ONNXPredictor`` on a registered dataset (e.g. FP32 vs INT8 AP)."""
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from tqdm import tqdm

from rtinst.evaluation import COCOEvaluator

__all__ = ["evaluate_onnx"]


def evaluate_onnx(predictor, dataset_name: str, output_dir=None) -> dict:
    """COCO metrics of ``predictor`` (BGR image -> {"instances"}) on ``dataset_name``."""
    evaluator = COCOEvaluator(dataset_name, output_dir=output_dir)
    evaluator.reset()
    for record in tqdm(DatasetCatalog.get(dataset_name), desc=f"ONNX on {dataset_name}"):
        image = read_image(record["file_name"], format="BGR")
        evaluator.process([record], [predictor(image)])
    return evaluator.evaluate()
