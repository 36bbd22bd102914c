"""Timing models fairly: untimed warm-up, then per-image wall times (synchronised on CUDA), with
the models interleaved image by image, in a rotating order, so background load hits all alike."""

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm


class ModuleTimer:
    """Wall time spent inside named submodules of a model during a call (forward hooks; CUDA is
    synchronised around each). Names the model lacks are left out."""

    def __init__(self, model: torch.nn.Module, names, device):
        self._cuda = torch.device(device).type == "cuda"
        self.elapsed_ms = {}
        self._starts = {}
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError:
                continue
            self.elapsed_ms[name] = 0.0
            module.register_forward_pre_hook(lambda *_, n=name: self._start(n))
            module.register_forward_hook(lambda *_, n=name: self._stop(n))

    def _sync(self):
        if self._cuda:
            torch.cuda.synchronize()

    def _start(self, name):
        self._sync()
        self._starts[name] = time.perf_counter()

    def _stop(self, name):
        self._sync()
        self.elapsed_ms[name] += (time.perf_counter() - self._starts.pop(name)) * 1000.0

    def reset(self):
        self.elapsed_ms = dict.fromkeys(self.elapsed_ms, 0.0)


@dataclass
class TimedModel:
    """A model in eval mode (or any callable taking a list of input dicts and returning a list of
    ``{"instances": ...}``, e.g. an ONNX Runtime session's wrapper), its prepared inputs (batch
    size 1 each), optionally a timer of some of its submodules, and the model as built when the
    timed one is an inference-optimised copy of it (what exports to ONNX and is counted)."""

    model: torch.nn.Module
    inputs: list
    module_timer: ModuleTimer = None
    built: torch.nn.Module = None

    @property
    def as_built(self) -> torch.nn.Module:
        return self.model if self.built is None else self.built


@dataclass
class Measurement:
    """Per-iteration results of one model."""

    times_ms: list = field(default_factory=list)
    detections: list = field(default_factory=list)
    peak_extra_bytes: int = 0  # CUDA: largest allocation above what was held before a call
    module_ms: dict = field(default_factory=dict)  # submodule name -> per-iteration times

    def summary(self):
        times = np.asarray(self.times_ms)
        return {
            "median_ms": float(np.median(times)),
            "p90_ms": float(np.percentile(times, 90)),
            "mean_ms": float(times.mean()),
            "images_per_s": float(1000.0 / times.mean()),
            "detections_mean": float(np.mean(self.detections)),
            "detections_min": int(min(self.detections)),
            "detections_max": int(max(self.detections)),
            "times_ms": [float(t) for t in times],
            "module_median_ms": {n: float(np.median(t)) for n, t in self.module_ms.items()},
        }


def _timed_call(model, image, device):
    """(milliseconds, detections, peak extra CUDA bytes) of one forward pass."""
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    outputs = model([image])
    if on_cuda:
        torch.cuda.synchronize(device)
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    extra = torch.cuda.max_memory_allocated(device) - held if on_cuda else 0
    instances = outputs[0].get("instances")
    return elapsed_ms, 0 if instances is None else len(instances), extra


@torch.inference_mode()
def measure_interleaved(timed_models, warmup, iters, device):
    """Runs ``warmup`` untimed then ``iters`` timed rounds; in round r every model processes its
    input r % len(inputs), starting with model r % len(models). Returns one Measurement per model.
    """
    device = torch.device(device)
    measurements = [Measurement() for _ in timed_models]
    order = list(range(len(timed_models)))
    with tqdm(
        total=(warmup + iters) * len(order), desc="benchmark", unit="run", dynamic_ncols=True
    ) as bar:
        for r in range(warmup + iters):
            shift = r % len(order)
            for i in order[shift:] + order[:shift]:
                timed = timed_models[i]
                if timed.module_timer:
                    timed.module_timer.reset()
                elapsed_ms, detections, extra = _timed_call(
                    timed.model, timed.inputs[r % len(timed.inputs)], device
                )
                if r >= warmup:
                    m = measurements[i]
                    m.times_ms.append(elapsed_ms)
                    m.detections.append(detections)
                    m.peak_extra_bytes = max(m.peak_extra_bytes, extra)
                    if timed.module_timer:
                        for name, ms in timed.module_timer.elapsed_ms.items():
                            m.module_ms.setdefault(name, []).append(ms)
                bar.update()
    return measurements
