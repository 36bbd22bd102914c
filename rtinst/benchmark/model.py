"""Models to measure: built in eval mode on their device, with their weights file (loaded as
``rtinst.engine.Predictor`` loads it: through ``SafeCheckpointer``, strictly) or a random
initialisation whose normalisation statistics are calibrated so that outputs stay realistic."""

import logging
import os

import torch
from detectron2.modeling import build_model
from fvcore.nn import FlopCountAnalysis

from .detections import prepare_untrained

logger = logging.getLogger(__name__)


def resolve_weights(cfg):
    """Keeps ``cfg.MODEL.WEIGHTS`` only if it is a local file, clears it otherwise (URLs such as
    ``detectron2://...`` cannot be fetched here) and describes the weights the model will get."""
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        return "random init"
    if os.path.isfile(weights):
        return f"file {weights}"
    cfg.MODEL.WEIGHTS = ""
    return f"random init ({weights} is not a local file, ignored)"


def _normalisation_layers(model):
    """Layers normalising with stored running statistics (BatchNorm, FrozenBatchNorm, SyncBN)."""
    return [m for m in model.modules() if isinstance(getattr(m, "running_var", None), torch.Tensor)]


@torch.no_grad()
def calibrate_normalisation(model, inputs):
    """Sets every stored-statistics normalisation layer's running mean/variance to those of its
    input on ``inputs``, in execution order. Without this, a randomly initialised deep network
    (FrozenBN = identity) has activations in the thousands: scores saturate and boxes leave the
    image, so that detection counts and post-processing costs are unlike a trained model's.
    Returns the number of layers calibrated."""

    def use_input_statistics(layer, args):
        x = args[0]
        dims = [d for d in range(x.dim()) if d != 1]
        layer.running_mean.copy_(x.mean(dim=dims))
        layer.running_var.copy_(x.var(dim=dims, unbiased=False))

    layers = _normalisation_layers(model)
    handles = [layer.register_forward_pre_hook(use_input_statistics) for layer in layers]
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return len(layers)


def build_eval_model(cfg, calibration_inputs, seed=0):
    """``(model, weights description)``: the model of ``cfg`` (mutated by ``resolve_weights``) in
    eval mode on ``cfg.MODEL.DEVICE``. A random initialisation is seeded (the same architecture gets
    the same weights), prepared as its detection families say (``prepare_untrained``) and
    calibrated on ``calibration_inputs``. A weights file loads through
    ``rtinst.engine.predictor.load_weights`` (no code in it runs; a ``CheckpointError`` for a file
    that cannot be read or does not fit the model: a partly random model would not be measured
    as the trained one runs)."""
    # imported here: ``import rtinst`` imports this package, and need not load rtinst.engine
    from rtinst.engine.predictor import load_weights

    weights = resolve_weights(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        load_weights(model, cfg.MODEL.WEIGHTS)
        return model, weights
    for change in prepare_untrained(cfg, model):
        weights += f", {change}"
    if calibrate_normalisation(model, calibration_inputs):
        weights += ", normalisation statistics calibrated on one image"
    return model, weights


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def model_size_bytes(model):
    """Bytes held by the parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class _ImageToTensors(torch.nn.Module):
    """Calls a Detectron2 model on one image tensor and returns its output instances' tensors, so
    that fvcore can trace it (detectron2.utils.analysis needs caffe2, absent here)."""

    def __init__(self, model, height, width):
        super().__init__()
        self.model, self.height, self.width = model, height, width

    def forward(self, image):
        outputs = self.model([{"image": image, "height": self.height, "width": self.width}])[0]
        fields = outputs["instances"].get_fields().values()
        return tuple(getattr(value, "tensor", value) for value in fields)


def _flop_analysis(model, input_dict):
    """fvcore's FlopCountAnalysis of ``model`` on ``input_dict``, traced through
    ``_ImageToTensors`` (submodule names therefore start with ``model.``)."""
    wrapper = _ImageToTensors(model, input_dict["height"], input_dict["width"])
    analysis = FlopCountAnalysis(wrapper, (input_dict["image"],))
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def count_gflops(model, input_dict):
    """GFLOPs (fvcore's count: convolutions, matrix products, ...) of one forward pass on
    ``input_dict``, or None with a warning when the model cannot be traced."""
    return count_gflops_by_module(model, input_dict, ())[0]


def count_gflops_by_module(model, input_dict, names):
    """``(total GFLOPs, {name: GFLOPs})`` of one forward pass on ``input_dict`` from a single
    trace: the whole model and each named submodule (``names`` as for ``get_submodule``, e.g.
    ``"blender"``; names the model lacks are left out). fvcore attributes an operation
    to every module whose forward is running when it executes, so a submodule's count covers its
    own forward only: work its caller does between submodule calls is in no submodule's count.
    ``(None, {})`` with a warning when the model cannot be traced."""
    try:
        with torch.no_grad():
            analysis = _flop_analysis(model, input_dict)
            total = analysis.total() / 1e9
            by_module = analysis.by_module() if names else {}
    except Exception as e:  # tracing fails on some models; FLOPs are optional
        logger.warning(f"FLOP count failed ({type(e).__name__}: {e})")
        return None, {}
    per_module = {}
    for name in names:
        try:
            model.get_submodule(name)
        except AttributeError:
            continue
        per_module[name] = by_module.get(f"model.{name}", 0) / 1e9
    return total, per_module
