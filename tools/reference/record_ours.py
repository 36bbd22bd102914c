#!/usr/bin/env python
"""Record what our models compute for every golden fixture, in the fixtures' own format, so that
the rounding noise between CPU instruction sets can be measured instead of guessed.

    python tools/reference/record_ours.py --out /tmp/ours_native.json
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python tools/reference/record_ours.py --out /tmp/ours_avx2.json
    python tools/reference/record_ours.py --compare /tmp/ours_*.json \
        --json benchmarks/golden_isa_noise.json

Recorded: the reference cases (``tests/fixtures/reference/``: detections at the config's
threshold and at 0, losses, gradient norms) and the method golden outputs
(``tests/golden_outputs.py``). ``--compare`` prints, for each recording against the frozen
fixtures, the largest deviation of each quantity (``tests/golden_tolerances.py`` measures them),
and writes them with the machine and the caps of each recording.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from rtinst.benchmark.machine import git_commit, machine_info  # noqa: E402


def record():
    import torch

    import rtinst  # noqa: F401
    from golden_outputs import MODELS, compute
    from rtinst.reference import golden_inputs, seeded_models

    fixtures = ROOT / "tests" / "fixtures" / "reference"
    cases = {}
    for path in sorted(fixtures.glob("*.json")):
        expected = json.loads(path.read_text())
        inference = {}
        for run, exp in expected["inference"].items():
            model = seeded_models.build_seeded(str(ROOT / expected["our_config"]),
                                               expected["weights_sha256"],
                                               exp["score_threshold"])
            with torch.no_grad():
                instances = model(golden_inputs.inference_inputs())[0]["instances"]
            inference[run] = {"score_threshold": exp["score_threshold"],
                              "detections": golden_inputs.detection_records(instances)}
        model = seeded_models.build_seeded(str(ROOT / expected["our_config"]))
        cases[path.stem] = {"inference": inference,
                            "training": golden_inputs.training_record(model)}
        print(path.stem, flush=True)
    methods = {}
    for name in MODELS:
        methods[name] = {k: v.tolist() for k, v in compute(name).items()}
        print(name, flush=True)
    return {"machine": machine_info(), "reference": cases, "methods": methods}


def deviations_from_fixtures(ours):
    """{quantity: the largest deviation of ``ours`` (a recording) from the frozen fixtures}."""
    import numpy as np
    import torch

    import golden_tolerances as gt
    from golden_outputs import IMAGE_SIZE, fixture_path
    from test_reference_golden import LOSS_NAMES

    worst = {"box_px": 0.0, "score": 0.0, "mask_score": 0.0, "mask_iou": 1.0,
             "mean_mask_iou": 1.0, "boundary": 0, "nms_ties": 0, "unexplained": 0,
             "loss_rel": 0.0, "grad_rtol_needed": 0.0}
    cases = {}

    def fold(name, deviation):
        cases[name] = deviation
        for key in ("box_px", "score", "mask_score", "boundary", "nms_ties", "unexplained"):
            worst[key] = max(worst[key], deviation[key])
        for key in ("mask_iou", "mean_mask_iou"):
            worst[key] = min(worst[key], deviation[key])

    def fold_training(name, losses, expected_losses, grads, expected_grads, tol):
        loss = max(gt.relative(losses[k], v) for k, v in expected_losses.items())
        grad = gt.gradient_rtol_needed(grads, expected_grads, tol)
        cases[name] = {"loss_rel": loss, "grad_rtol_needed": grad}
        worst["loss_rel"] = max(worst["loss_rel"], loss)
        worst["grad_rtol_needed"] = max(worst["grad_rtol_needed"], grad)

    fixtures = ROOT / "tests" / "fixtures" / "reference"
    for name, case in ours["reference"].items():
        expected = json.loads((fixtures / f"{name}.json").read_text())
        for run, got in case["inference"].items():
            fold(f"{name}/{run}", gt.detection_deviations(
                gt.records_from_rle(got["detections"]),
                gt.records_from_rle(expected["inference"][run]["detections"]), gt.REFERENCE))
        losses = {LOSS_NAMES.get(k, k): v for k, v in expected["training"]["losses"].items()}
        fold_training(f"{name}/training", case["training"]["losses"], losses,
                      case["training"]["grad_norms"], expected["training"]["grad_norms"],
                      gt.REFERENCE)
    for name, got in ours["methods"].items():
        expected = {k: v.numpy() for k, v in
                    torch.load(fixture_path(name), weights_only=True).items()}
        fold(f"method {name}/detections", gt.detection_deviations(
            gt.records_from_outputs(got, IMAGE_SIZE),
            gt.records_from_outputs(expected, IMAGE_SIZE), gt.METHODS))
        fold_training(f"method {name}/training",
                      {k: float(np.asarray(v)) for k, v in got.items() if k.startswith("loss/")},
                      {k: float(v) for k, v in expected.items() if k.startswith("loss/")},
                      {k: float(np.asarray(v)) for k, v in got.items()
                       if k.startswith("grad_norm/")},
                      {k: float(v) for k, v in expected.items() if k.startswith("grad_norm/")},
                      gt.METHODS)
    return worst, cases


def compare(paths):
    report = {"commit": git_commit(ROOT), "recordings": {}}
    for path in paths:
        ours = json.loads(Path(path).read_text())
        worst, cases = deviations_from_fixtures(ours)
        report["recordings"][Path(path).name] = {"machine": ours["machine"],
                                                 "largest_deviations": worst, "cases": cases}
        print(f"{path} ({ours['machine']}):")
        for quantity, value in worst.items():
            print(f"  {quantity}: {value:.3g}")
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write our outputs here (JSON)")
    parser.add_argument("--compare", nargs="+", help="recordings to compare with the fixtures")
    parser.add_argument("--json", help="with --compare: write the deviations here")
    args = parser.parse_args()
    if args.out:
        Path(args.out).write_text(json.dumps(record()))
    if args.compare:
        report = compare(args.compare)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
