"""FCOS, BlendMask, CenterMask and BlitzMask compute what they computed when the fixtures were
saved (``golden_outputs.py``): the same losses, gradients and detections on fixed weights and
inputs, so that moving code (e.g. into shared building blocks) provably changes no output.
Compared within ``golden_tolerances.METHODS``: what rounding moves between CPUs, measured."""
import numpy as np
import pytest
import torch
from golden_outputs import IMAGE_SIZE, MODELS, compute, fixture_path

import golden_tolerances as gt

TOL = gt.METHODS


def _floats(outputs, prefix):
    return {k: float(v) for k, v in outputs.items() if k.startswith(prefix)}


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_equal_the_saved_ones(name):
    expected = torch.load(fixture_path(name), weights_only=True)
    actual = compute(name)
    assert sorted(actual) == sorted(expected)
    problems = gt.loss_problems(_floats(actual, "loss/"), _floats(expected, "loss/"), TOL)
    problems += gt.gradient_problems(_floats(actual, "grad_norm/"),
                                     _floats(expected, "grad_norm/"), TOL)
    deviation = gt.detection_deviations(
        gt.records_from_outputs({k: np.asarray(v) for k, v in actual.items()}, IMAGE_SIZE),
        gt.records_from_outputs({k: np.asarray(v) for k, v in expected.items()}, IMAGE_SIZE),
        TOL)
    problems += gt.detection_problems(deviation, TOL)
    assert not problems, f"{name}: " + "; ".join(problems[:10])
