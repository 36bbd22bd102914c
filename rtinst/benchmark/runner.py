"""One benchmark run: every model (at every requested detection count) built in this process,
fed the same inputs and measured interleaved; returns a JSON-ready report."""

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rtinst.utils.environment import environment_info

from .detections import fix_detection_count
from .inputs import fixed_input_size, prepare_inputs, resize_transform
from .latency import ModuleTimer, TimedModel, measure_interleaved
from .model import build_eval_model, count_gflops_by_module, count_parameters, model_size_bytes
from .report import add_baseline_ratios
from .video import TrackedModel

logger = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    """A model to measure: its label, the config as given (path or zoo:name) and the loaded cfg."""

    label: str
    config: str
    cfg: object
    baseline: bool = False


@dataclass
class BenchmarkSettings:
    """What every model is measured with."""

    input_size: str = "512"  # shorter side, or HxW
    max_size: int = 1333  # longer side limit with a shorter-side size
    warmup: int = 3
    iters: int = 20
    num_detections: tuple = (None,)  # K values; None keeps each model's own thresholds
    flops: bool = False
    time_modules: tuple = ()  # submodule names (e.g. "blender") whose own time is reported
    # (and, with flops, their GFLOPs)
    onnx: bool = False  # also time every exportable non-baseline model in ONNX Runtime (HxW only)
    onnx_int8: str = None  # "dynamic" or "static": also its INT8 version (implies onnx)
    video: bool = False  # also time every non-baseline model followed by the online tracker


def _device_of(specs):
    devices = {spec.cfg.MODEL.DEVICE for spec in specs}
    if len(devices) != 1:
        raise ValueError(f"all models must run on one device, got {sorted(devices)}")
    return devices.pop()


def _build(spec, k, images, resize, device, inputs_by_format, with_flops, time_modules):
    """(TimedModel, report row without measurements) for ``spec`` at detection count ``k``, run
    by PyTorch."""
    cfg = spec.cfg.clone()
    families = fix_detection_count(cfg, k) if k is not None else []
    image_format = cfg.INPUT.FORMAT
    if image_format not in inputs_by_format:
        inputs_by_format[image_format] = prepare_inputs(images, resize, image_format, device)
    inputs = inputs_by_format[image_format]
    model, weights = build_eval_model(cfg, inputs[:1])
    logger.info(f"{spec.label}{'' if k is None else f' (K={k})'}: weights = {weights}")
    timed = _as_the_predictor_runs(model, cfg)
    row = {
        "label": spec.label,
        "config": spec.config,
        "baseline": spec.baseline,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "weights": weights,
        "num_detections": k,
        "detection_families": families,
        "runtime": "pytorch",
        "optimized_for_inference": timed is not model,
        "video": False,
        "quantization": None,
        "params": count_parameters(model),
        "gflops": None,
        "module_gflops": {},  # submodule name -> GFLOPs (with flops and time_modules)
    }
    if with_flops:
        row["gflops"], row["module_gflops"] = count_gflops_by_module(model, inputs[0], time_modules)
    timer = ModuleTimer(timed, time_modules, device) if time_modules else None
    return TimedModel(timed, inputs, timer, built=model), row


def _as_the_predictor_runs(model, cfg):
    """``model`` as rtinst's ``Predictor`` runs it: optimised for inference where the config
    says so (``TEST.OPTIMIZE_FOR_INFERENCE`` on a CPU; the Detectron2 baselines load through
    rtinst's config too), else itself."""
    from rtinst.engine.predictor import optimizes_for_inference  # (rtinst imports this package)
    from rtinst.modeling.inference_fusion import optimize_for_inference

    return optimize_for_inference(model) if optimizes_for_inference(cfg) else model


def _build_onnx(timed, row, size, image_format, folder, int8, images):
    """``[(TimedModel, row)]`` for the PyTorch entry ``timed, row`` exported to ONNX (same weights
    and detection count) and run by ONNX Runtime on the same inputs, at ``size`` (H, W); empty,
    with a warning, for a model that cannot be exported."""
    from .onnx_runtime import export_runtime_models

    try:
        entries = export_runtime_models(
            timed.as_built, folder, *size, image_format, torch.get_num_threads(), int8, images
        )
    except (TypeError, ValueError) as e:
        logger.warning(f"{row['label']}: no ONNX Runtime entry ({e})")
        return []
    logger.info(f"{row['label']}: exported to ONNX at {size[0]}x{size[1]}")
    built = []
    for runtime, quantization, onnx_model in entries:
        onnx_row = dict(
            row,
            label=f"{row['label']} [{runtime}]",
            runtime="onnxruntime",
            optimized_for_inference=False,  # ONNX Runtime's own graph optimisations apply
            quantization=quantization,
            gflops=None,  # the graph is not counted (fvcore traces PyTorch models)
            module_gflops={},
        )
        built.append((TimedModel(onnx_model, timed.inputs), onnx_row))
    return built


def _build_video(timed, row, cfg):
    """``(TimedModel, row)`` of the PyTorch entry ``timed, row`` followed by the online tracker
    on every detection (``rtinst.benchmark.video``), on the same inputs taken as the frames of
    a video, in order."""
    tracked = TrackedModel(timed.model, cfg)
    return TimedModel(tracked, timed.inputs, tracked), dict(
        row, label=f"{row['label']} [video]", video=True, gflops=None, module_gflops={}
    )


def _check_detection_count(row):
    """Whether every image got exactly the requested K detections (None when K is not fixed)."""
    k = row["num_detections"]
    if k is None:
        return None
    achieved = row["detections_min"] == row["detections_max"] == k
    if not achieved:
        logger.warning(
            f"{row['label']}: asked for {k} detections per image, got "
            f"{row['detections_min']}..{row['detections_max']}"
        )
    return achieved


def run_benchmark(specs, images, settings, image_source=""):
    """Measures ``specs`` on ``images`` (BGR uint8 arrays) as ``settings`` say. Returns
    ``{"environment", "settings", "models": [row per model and K]}``; rows carry latency statistics,
    detections and ``ratio`` (median / median of each baseline at the same K). With
    ``settings.onnx``, each exportable non-baseline model's row is followed by a row of the same
    model run by ONNX Runtime (``"runtime": "onnxruntime"``; PyTorch rows: ``"pytorch"``); with
    ``settings.video``, by a row of the model followed by the online tracker (``"video": True``,
    the association's time in ``module_median_ms["association"]``)."""
    device = _device_of(specs)
    resize = resize_transform(settings.input_size, settings.max_size)
    with_onnx = settings.onnx or bool(settings.onnx_int8)
    size = fixed_input_size(settings.input_size)
    if with_onnx and size is None:
        raise ValueError("ONNX Runtime entries need a fixed HxW input size (the graph's)")
    if with_onnx and torch.device(device).type != "cpu":
        logger.warning("ONNX Runtime entries run on the CPU (CPUExecutionProvider)")
    inputs_by_format = {}
    built = []
    with tempfile.TemporaryDirectory(prefix="rtinst-benchmark-onnx-") as onnx_folder:
        for k in settings.num_detections:
            for spec in specs:
                timed, row = _build(spec, k, images, resize, device, inputs_by_format,
                                    settings.flops, settings.time_modules)
                built.append((timed, row))
                if settings.video and not spec.baseline:
                    built.append(_build_video(timed, row, spec.cfg))
                if with_onnx and not spec.baseline:
                    folder = Path(onnx_folder) / f"{len(built)}"
                    built += _build_onnx(timed, row, size, spec.cfg.INPUT.FORMAT, folder,
                                         settings.onnx_int8, images)
        timed_models = [timed for timed, _ in built]
        measurements = measure_interleaved(timed_models, settings.warmup, settings.iters, device)
    on_cuda = torch.device(device).type == "cuda"
    rows = []
    for (timed, row), measurement in zip(built, measurements):
        row.update(measurement.summary())
        row["detections_achieved"] = _check_detection_count(row)
        # CUDA: the model's weights plus its largest allocation during a call; CPU: not measured
        row["peak_memory_mb"] = (
            (model_size_bytes(timed.model) + measurement.peak_extra_bytes) / 2**20
            if on_cuda and row["runtime"] == "pytorch"
            else None
        )
        rows.append(row)
    add_baseline_ratios(rows)
    run_settings = dict(
        asdict(settings),
        device=device,
        num_images=len(images),
        images=image_source,
        num_detections=list(settings.num_detections),
    )
    return {"environment": environment_info(device), "settings": run_settings, "models": rows}
