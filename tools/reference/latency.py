#!/usr/bin/env python
"""Inference latency of ours against the reference implementation's, on the same name-seeded
weights, the same 512 x 640 picture and at the config's own score threshold.

    python tools/reference/latency.py --adelaidet /path/AdelaiDet --centermask2 /path/centermask2 \
        --threads 2 --rounds 3 --iterations 4 --json benchmarks/reference_latency.json

The two sides cannot share a process (both register "FCOS", "BlendMask"... in Detectron2), so
each measurement is a fresh worker process (this script with ``--worker``) that builds one
model, warms it up and times ``--iterations`` forward passes; rounds alternate reference and
ours for every case, so drifts of the machine hit both alike. Ours is timed as rtinst's
``Predictor`` runs it (``rtinst.modeling.inference_fusion.optimize_for_inference``; ``--plain``:
as built). Reported: the median over every
timed pass of each side, their ratio, and the detection counts (which must be equal).
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _worker(args):
    import torch

    torch.set_num_threads(args.threads)
    import reference_outputs as runner

    if args.side == "reference":
        reference, config, key_spec, _ = runner.CASES[args.case]
        get_cfg = runner.import_reference(reference, args.repo)
        _, model, _ = runner.build_reference(get_cfg, args.repo, config, key_spec)
        inputs = runner.golden_inputs.inference_inputs()
    else:
        import rtinst  # noqa: F401
        from rtinst.modeling.inference_fusion import optimize_for_inference
        from rtinst.reference import golden_inputs, seeded_models

        record = json.loads((runner.OUTPUT / f"{args.case}.json").read_text())
        model = seeded_models.build_seeded(str(ROOT / record["our_config"]),
                                           record["weights_sha256"])
        if not args.plain:  # what rtinst's Predictor runs
            model = optimize_for_inference(model)
        inputs = golden_inputs.inference_inputs()
    times = []
    with torch.inference_mode():
        for i in range(args.warmup + args.iterations):
            start = time.perf_counter()
            detections = len(model(inputs)[0]["instances"])
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    print(json.dumps({"times_s": times, "detections": detections}))


def _measure(case, side, repo, args):
    command = [sys.executable, __file__, "--worker", "--case", case, "--side", side,
               "--threads", str(args.threads), "--iterations", str(args.iterations),
               "--warmup", str(args.warmup)] + (["--plain"] if args.plain else [])
    if repo:
        command += ["--repo", str(repo)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adelaidet", type=Path, help="AdelaiDet checkout")
    parser.add_argument("--centermask2", type=Path, help="centermask2 checkout")
    parser.add_argument("--cases", nargs="*")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=4, help="timed passes per worker")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plain", action="store_true",
                        help="time our model as built, without optimize_for_inference")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("reference", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)

    import reference_outputs as runner

    repos = {"adelaidet": args.adelaidet, "centermask2": args.centermask2}
    cases = args.cases or [c for c, spec in runner.CASES.items() if repos[spec[0]]]
    if not cases:
        raise SystemExit("give --adelaidet and/or --centermask2")
    times = {c: {"reference": [], "ours": []} for c in cases}
    counts = {c: {} for c in cases}
    for round_index in range(args.rounds):
        for case in cases:
            repo = repos[runner.CASES[case][0]]
            for side in ("reference", "ours"):
                result = _measure(case, side, repo if side == "reference" else None, args)
                times[case][side] += result["times_s"]
                counts[case][side] = result["detections"]
            print(f"round {round_index + 1}/{args.rounds} {case}: done", file=sys.stderr)
    rows = []
    for case in cases:
        ref, ours = (statistics.median(times[case][s]) for s in ("reference", "ours"))
        rows.append({"case": case, "reference_s": ref, "ours_s": ours, "ratio": ours / ref,
                     "detections": counts[case], "samples": len(times[case]["ours"]),
                     "times_s": times[case]})
        print(f"{case:26s} reference {ref:.3f} s  ours {ours:.3f} s  ours/reference "
              f"{ours / ref:.2f}  detections {counts[case]}")
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        args.json.write_text(json.dumps({
            "what": "inference latency, ours vs reference, same name-seeded weights, "
                    "512x640 seeded picture, configs' score thresholds",
            "command": " ".join(sys.argv), "commit": commit, "threads": args.threads,
            "ours": "as built" if args.plain else "optimize_for_inference",
            "rounds": args.rounds, "iterations_per_worker": args.iterations,
            "warmup_per_worker": args.warmup, "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
