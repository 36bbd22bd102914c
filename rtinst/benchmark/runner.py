"""One benchmark run: every model (at every requested detection count) built in this process,
fed the same inputs and measured interleaved; returns a JSON-ready report."""

import logging
from dataclasses import asdict, dataclass

import torch

from .detections import fix_detection_count
from .inputs import prepare_inputs, resize_transform
from .latency import ModuleTimer, TimedModel, measure_interleaved
from .model import build_eval_model, count_gflops, count_parameters, model_size_bytes
from .report import add_baseline_ratios, environment_info

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


def _device_of(specs):
    devices = {spec.cfg.MODEL.DEVICE for spec in specs}
    if len(devices) != 1:
        raise ValueError(f"all models must run on one device, got {sorted(devices)}")
    return devices.pop()


def _build(spec, k, images, resize, device, inputs_by_format, with_flops, time_modules):
    """(TimedModel, report row without measurements) for ``spec`` at detection count ``k``."""
    cfg = spec.cfg.clone()
    families = fix_detection_count(cfg, k) if k is not None else []
    image_format = cfg.INPUT.FORMAT
    if image_format not in inputs_by_format:
        inputs_by_format[image_format] = prepare_inputs(images, resize, image_format, device)
    inputs = inputs_by_format[image_format]
    model, weights = build_eval_model(cfg, inputs[:1])
    logger.info(f"{spec.label}{'' if k is None else f' (K={k})'}: weights = {weights}")
    row = {
        "label": spec.label,
        "config": spec.config,
        "baseline": spec.baseline,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "weights": weights,
        "num_detections": k,
        "detection_families": families,
        "params": count_parameters(model),
        "gflops": count_gflops(model, inputs[0]) if with_flops else None,
    }
    timer = ModuleTimer(model, time_modules, device) if time_modules else None
    return TimedModel(model, inputs, timer), row


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
    detections and ``ratio`` (median / median of each baseline at the same K)."""
    device = _device_of(specs)
    resize = resize_transform(settings.input_size, settings.max_size)
    inputs_by_format = {}
    built = [
        _build(spec, k, images, resize, device, inputs_by_format, settings.flops,
               settings.time_modules)
        for k in settings.num_detections
        for spec in specs
    ]
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
            if on_cuda
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
