"""Our FCOS, BlendMask, BlendMask-RT, CenterMask and CenterMask-Lite compute what the reference
implementations (AdelaiDet, centermask2) computed on the same name-seeded weights and inputs.

``tests/fixtures/reference/*.json`` were written by ``tools/reference/reference_outputs.py``
running the reference itself (see ``tools/reference/README.md``); the weights are
``rtinst/reference/seeded_weights.py``'s ``DETECTRON2_RULE`` on the reference checkpoint's names,
which are ours too, so they load without renaming. Checked: the detections of a 512 x 640
picture at the config's threshold and at 0 (boxes <= 1e-3 px, scores <= 1e-5, classes equal,
pasted masks IoU >= 0.999), every training loss of a two-image batch (1e-5 relative) and the
gradient norm of every parameter (1e-4 relative).
"""
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from rtinst.reference import golden_inputs, seeded_models

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "reference"
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))
# our loss names where they differ from the reference's
LOSS_NAMES = {"loss_basis_sem": "loss_basis_semantic"}
BOX_ATOL, SCORE_ATOL, MIN_MASK_IOU = 1e-3, 1e-5, 0.999
LOSS_RTOL, GRAD_NORM_RTOL = 1e-5, 1e-4
# gradients that are 0 but for rounding (a conv bias before a training-mode BatchNorm: ~3e-8)
GRAD_NORM_ATOL = 1e-6

pytestmark = pytest.mark.slow


def _record(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def build_seeded(record, score_threshold=None):
    """Our model of ``record["our_config"]`` with the reference's name-seeded weights."""
    return seeded_models.build_seeded(str(ROOT / record["our_config"]), record["weights_sha256"],
                                      score_threshold)


def _mask_iou(ours: np.ndarray, rle: dict) -> float:
    theirs = mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    union = np.logical_or(ours, theirs).sum()
    return 1.0 if union == 0 else float(np.logical_and(ours, theirs).sum() / union)


def compare_detections(instances, expected):
    """Problems (strings) between our ``instances`` and the reference's detection records."""
    if len(instances) != len(expected):
        return [f"{len(instances)} detections, the reference {len(expected)}"]
    problems = []
    masks = instances.pred_masks.numpy() if instances.has("pred_masks") else None
    for i, ref in enumerate(expected):
        box = instances.pred_boxes.tensor[i].tolist()
        if max(abs(a - b) for a, b in zip(box, ref["box"])) > BOX_ATOL:
            problems.append(f"#{i} box {box} vs {ref['box']}")
        if abs(float(instances.scores[i]) - ref["score"]) > SCORE_ATOL:
            problems.append(f"#{i} score {float(instances.scores[i])} vs {ref['score']}")
        if int(instances.pred_classes[i]) != ref["class"]:
            problems.append(f"#{i} class {int(instances.pred_classes[i])} vs {ref['class']}")
        if "mask_score" in ref and abs(float(instances.mask_scores[i]) - ref["mask_score"]) > SCORE_ATOL:
            problems.append(f"#{i} mask score {float(instances.mask_scores[i])} vs {ref['mask_score']}")
        if "mask_rle" in ref and _mask_iou(masks[i], ref["mask_rle"]) < MIN_MASK_IOU:
            problems.append(f"#{i} mask IoU {_mask_iou(masks[i], ref['mask_rle']):.4f}")
    return problems


def _relative(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


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
    losses, grad_norms = ours["losses"], ours["grad_norms"]
    expected = {LOSS_NAMES.get(k, k): v for k, v in record["training"]["losses"].items()}
    assert sorted(losses) == sorted(expected)
    loss_problems = {k: (losses[k], v) for k, v in expected.items()
                     if _relative(losses[k], v) > LOSS_RTOL}
    assert not loss_problems, f"{name}: (ours, reference) {loss_problems}"
    expected_grads = record["training"]["grad_norms"]
    assert sorted(grad_norms) == sorted(expected_grads)
    grad_problems = {k: (grad_norms[k], v) for k, v in expected_grads.items()
                     if abs(grad_norms[k] - v) > GRAD_NORM_ATOL + GRAD_NORM_RTOL * abs(v)}
    assert not grad_problems, f"{name}: {len(grad_problems)} gradient norms differ, e.g. " + str(
        dict(list(grad_problems.items())[:5]))


def test_fixtures_are_there():
    assert len(CASES) == 5, f"expected the five reference fixtures, found {CASES}"
