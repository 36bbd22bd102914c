"""The evaluator of a dataset: the one registered for its ``evaluator_type`` metadata."""
from detectron2.data import MetadataCatalog

from rtinst.methods import find_part

from .coco_evaluation import COCOEvaluator
from .ytvis_evaluation import YTVISEvaluator

__all__ = ["build_coco_evaluator", "build_evaluator", "build_ytvis_evaluator"]


def build_coco_evaluator(cfg, dataset_name, output_folder):
    """``evaluator_type "coco"``: box (and mask, for a model predicting them) COCO AP."""
    return COCOEvaluator(dataset_name, output_dir=output_folder)


def build_ytvis_evaluator(cfg, dataset_name, output_folder):
    """``evaluator_type "ytvis"`` (video datasets): YouTube-VIS video AP / AR of the tracks and
    identity metrics of those scoring at least ``TEST.VIDEO_ID_SCORE_THRESH``."""
    return YTVISEvaluator(dataset_name, output_dir=output_folder,
                          id_score_threshold=cfg.TEST.VIDEO_ID_SCORE_THRESH)


def build_evaluator(cfg, dataset_name, output_folder):
    """The evaluator for ``dataset_name``: its metadata's ``evaluator_type`` ("coco" when unset)
    names the builder a method registered (``rtinst.register_method(evaluators=...)``)."""
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
    build = find_part("evaluators", evaluator_type, f"dataset {dataset_name}: evaluator_type")
    return build(cfg, dataset_name, output_folder)
