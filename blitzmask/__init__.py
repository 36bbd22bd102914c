"""BlitzMask (Samsung, 2022): importing this package registers the ``BlitzMask``
meta-architecture, its config keys (``add_blitzmask_config``), its detection family (the top-K
heatmap peaks, for the benchmark and demo) and its ONNX export pipeline."""
from rtinst import register_method
from rtinst.benchmark import DetectionFamily
from rtinst.export import AnySizePipeline

from .blitzmask import BlitzMask
from .config import add_blitzmask_config
from .lite_head import HeadOutputs, LiteHead

__all__ = ["BlitzMask", "HeadOutputs", "LiteHead", "add_blitzmask_config"]

register_method(
    "blitzmask",
    add_config=add_blitzmask_config,
    class_count_keys=("MODEL.BLITZMASK.NUM_CLASSES",),
    # instances are the top-K heatmap peaks above the score threshold (no NMS); with threshold 0
    # there are exactly K whenever the heatmap has at least K local maxima
    detection_families={("MODEL.META_ARCHITECTURE", "BlitzMask"): DetectionFamily(
        score_thresholds=("MODEL.BLITZMASK.TEST.SCORE_THRESH",),
        max_detections=("MODEL.BLITZMASK.TEST.TOPK",),
    )},
    export_pipelines={"BlitzMask": AnySizePipeline},
)
