"""Latency benchmarking of Detectron2/rtinst models (the library behind tools/benchmark.py):
fixed detection counts (``detections``), inputs (``inputs``), model building and weights
(``model``), timing (``latency``), ONNX Runtime entries (``onnx_runtime``), runs (``runner``) and
reports (``report``)."""

from .detections import (
    BUILTIN_FAMILIES,
    DetectionFamily,
    fix_detection_count,
    set_keyframe_interval,
    set_score_threshold,
)
from .inputs import (
    fixed_input_size,
    list_images,
    load_images,
    prepare_inputs,
    random_images,
    resize_transform,
)
from .latency import Measurement, TimedModel, measure_interleaved
from .model import (
    build_eval_model,
    calibrate_normalisation,
    count_gflops,
    count_gflops_by_module,
    count_parameters,
    resolve_weights,
)
from .plot import plot_latency
from .report import markdown_document, markdown_table
from .runner import BenchmarkSettings, ModelSpec, run_benchmark

__all__ = [
    "BenchmarkSettings",
    "Measurement",
    "ModelSpec",
    "BUILTIN_FAMILIES",
    "DetectionFamily",
    "TimedModel",
    "build_eval_model",
    "calibrate_normalisation",
    "count_gflops",
    "count_gflops_by_module",
    "count_parameters",
    "fix_detection_count",
    "fixed_input_size",
    "list_images",
    "load_images",
    "markdown_document",
    "markdown_table",
    "measure_interleaved",
    "plot_latency",
    "prepare_inputs",
    "random_images",
    "resize_transform",
    "resolve_weights",
    "run_benchmark",
    "set_keyframe_interval",
    "set_score_threshold",
]
