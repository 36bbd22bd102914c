"""YOLACT's name-seeded weights, images and targets for the reference-equivalence checks: the
shared rule of ``rtinst/reference/seeded_weights.py`` with YOLACT's departures (``YOLACT_RULE``),
and the pictures of ``rtinst/reference/seeded_inputs.py``. Both are loaded by file path, so
importing this module registers nothing of rtinst's (the reference runs beside it).

``YOLACT_RULE``:

* gain 2.0 for the class-confidence predictor (``conf_layer``): softmax scores spread well above
  the uniform 1/81 (varied scores, well over the 0.05 threshold);
* gain 2.0 for the deformable-conv offset/modulation predictors (``conv_offset_mask``): sampling
  offsets of about 0.5 px (a few px at most) and modulation masks away from 0.5, so a wrong
  offset layout would show;
* gamma ~ U(0.05, 0.15) for ``bn3``, the BN closing each ResNet residual branch, so that 33
  residual additions do not blow the activations up;
* biases ~ U(0.1, 0.2) inside ``maskiou_net`` (YOLACT++'s mask-IoU head): it sees box-cropped
  masks that are mostly zeros, and its ReLU/max-pool chain would return 0 for almost every
  detection.
"""
import importlib.util
from pathlib import Path

_REFERENCE = Path(__file__).resolve().parents[3] / "rtinst" / "reference"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"rtinst_reference_{name}", _REFERENCE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_weights = _load("seeded_weights")
_inputs = _load("seeded_inputs")

read_key_spec = _weights.read_key_spec
write_key_spec = _weights.write_key_spec
state_dict_digest = _weights.state_dict_digest
array_digest = _weights.array_digest
seeded_image = _inputs.seeded_image
seeded_targets = _inputs.seeded_targets
MIN_OBJECT_SIDE = _inputs.MIN_OBJECT_SIDE

YOLACT_RULE = _weights.SeedingRule(
    weight_gains=(("conv_offset_mask", 2.0), ("conf_layer", 2.0)),
    residual_closing_norms=("bn3",),
    bias_ranges=(("maskiou_net", (0.1, 0.2)),),
)


def seeded_state_dict(spec, rule=YOLACT_RULE):
    """Deterministic state dict of ``spec`` (from :func:`read_key_spec`) by ``rule``."""
    return _weights.seeded_state_dict(spec, rule)


# YolactEdge (the reference's names): YOLACT_RULE, and FlowNetMini's feature compensation near
# identity (scale ~ 1 +- 0.1, bias ~ 0 +- 0.1: gain 0.2, scale biases U(0.9, 1.1)) so that the
# warped P4 / P5 stay the keyframe's features moved by the flow (the flow itself: gain 1)
_COMPENSATION = ("scale",) + tuple(f"pred{i}.bias" for i in (1, 2, 3))
YOLACT_EDGE_RULE = _weights.SeedingRule(
    weight_gains=YOLACT_RULE.weight_gains + tuple((part, 0.2) for part in _COMPENSATION),
    residual_closing_norms=YOLACT_RULE.residual_closing_norms,
    bias_ranges=YOLACT_RULE.bias_ranges + (("scale", (0.9, 1.1)),),
)
