"""Our FCOS, BlendMask, BlendMask-RT, CenterMask and CenterMask-Lite compute what the reference
implementations (AdelaiDet, centermask2) computed on the same name-seeded weights and inputs.

``tests/fixtures/reference/*.json`` were written by ``tools/reference/reference_outputs.py``
running the reference itself (see ``tools/reference/README.md``); the weights are
``rtinst/reference/seeded_weights.py``'s ``DETECTRON2_RULE`` on the reference checkpoint's names,
which are ours too, so they load without renaming. Checked: the detections of a 512 x 640
picture at the config's threshold and at 0 (paired as sets: boxes, scores, classes, mask scores,
pasted masks), every training loss of a two-image batch and the gradient norm of every
parameter, within ``golden_tolerances.REFERENCE``: what rounding moves between CPUs, measured.
"""
import json
from pathlib import Path

import pytest
import torch

import golden_tolerances as gt
from rtinst.reference import golden_inputs, seeded_models

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "reference"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))
# our loss names where they differ from the reference's
LOSS_NAMES = {"loss_basis_sem": "loss_basis_semantic"}
TOL = gt.REFERENCE

pytestmark = pytest.mark.slow


def _record(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def build_seeded(record, score_threshold=None):
    """Our model of ``record["our_config"]`` with the reference's name-seeded weights."""
    return seeded_models.build_seeded(str(ROOT / record["our_config"]), record["weights_sha256"],
                                      score_threshold)


def compare_detections(instances, expected):
    """Problems (strings) between our ``instances`` and the reference's detection records."""
    deviation = gt.detection_deviations(
        gt.records_from_rle(golden_inputs.detection_records(instances)),
        gt.records_from_rle(expected), TOL)
    return gt.detection_problems(deviation, TOL)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("run", ["config_threshold", "threshold_0"])
def test_detections_equal_the_reference(name, run):
    expected = _record(name)["inference"][run]
    model = build_seeded(_record(name), expected["score_threshold"])
    with torch.no_grad():
        instances = model(golden_inputs.inference_inputs())[0]["instances"]
    problems = compare_detections(instances, expected["detections"])
    assert not problems, f"{name} ({run}): " + "; ".join(problems[:10])


@pytest.mark.parametrize("name", CASES)
def test_losses_and_gradients_equal_the_reference(name):
    record = _record(name)
    ours = golden_inputs.training_record(build_seeded(record))
    expected = {LOSS_NAMES.get(k, k): v for k, v in record["training"]["losses"].items()}
    problems = gt.loss_problems(ours["losses"], expected, TOL)
    assert not problems, f"{name}: (ours vs reference) " + "; ".join(problems)
    problems = gt.gradient_problems(ours["grad_norms"], record["training"]["grad_norms"], TOL)
    assert not problems, f"{name}: {len(problems)} gradient norms differ, e.g. " + "; ".join(
        problems[:5])


def test_fixtures_are_there():
    assert len(CASES) == 5, f"expected the five reference fixtures, found {CASES}"
