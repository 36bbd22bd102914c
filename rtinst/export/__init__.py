"""Export to ONNX (whole pipeline, fixed input size; a video model's keyframe and frame graphs
with their state, ``graphs.py``), ONNX Runtime predictors returning Detectron2 ``Instances``
(``VideoONNXPredictor`` for videos), and INT8 quantization.

The pipelines (``pipeline.py``) need torch only, so that methods can register theirs at import;
the parts that need onnx / onnxruntime (importing onnx alone takes about a second) are imported
when first used.
"""
import importlib

from .graphs import GraphSpec, PipelineVideo
from .pipeline import (
    EXPORT_OUTPUTS,
    INPUT_NAMES,
    AnySizePipeline,
    FixedSizePipeline,
    export_pipeline,
)

_ONNX_PARTS = {
    "export_onnx": "onnx_export",
    "evaluate_onnx": "evaluate",
    "ONNXPredictor": "onnx_predictor",
    "VideoONNXPredictor": "video_predictor",
    "letterbox": "onnx_predictor",
    "Parity": "parity",
    "compare_outputs": "parity",
    "compare_instances": "parity",
    "InstanceParity": "parity",
    "mask_iou": "parity",
    "pair_instances": "parity",
    "quantize_onnx": "quantize",
}

__all__ = ["EXPORT_OUTPUTS", "INPUT_NAMES", "AnySizePipeline", "FixedSizePipeline", "GraphSpec",
           "PipelineVideo", "export_pipeline", *_ONNX_PARTS]


def __getattr__(name):
    if name in _ONNX_PARTS:
        return getattr(importlib.import_module(f".{_ONNX_PARTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
