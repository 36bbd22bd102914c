#!/usr/bin/env python
"""Inference latency of ours against the reference implementation's, on the same name-seeded
weights, the same 512 x 640 picture and at the config's own score threshold.

    python tools/reference/latency.py --adelaidet /path/AdelaiDet --centermask2 /path/centermask2 \
        --threads 2 --passes 20 --json benchmarks/reference_latency.json

The two sides cannot share a process (both register "FCOS", "BlendMask"... in Detectron2), so
each side is a worker process (this script with ``--worker``) that builds its model, warms it up
and then times one forward pass each time it is asked. The two workers of a case live side by
side and are asked in turn, pass by pass (the side that goes first swapping every pair), so a
burst of load on this shared machine hits a pair of passes, not one side's whole series. Ours
is timed as rtinst's ``Predictor`` runs it with ``TEST.OPTIMIZE_FOR_INFERENCE``
(``rtinst.modeling.inference_fusion.optimize_for_inference``; ``--plain``: as built).
Reported per case: the median pass of each side, their ratio, the median of the per-pair
ratios, and the detection counts (which must be equal).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _worker(args):
    """Builds one side's model, warms it up, prints "ready"; then one timed pass per "run" line
    on stdin, printing {"time_s", "detections"}; exits at end of input."""
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
        if not args.plain:  # what rtinst's Predictor runs with TEST.OPTIMIZE_FOR_INFERENCE
            model = optimize_for_inference(model)
        inputs = golden_inputs.inference_inputs()
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(inputs)
        print("ready", flush=True)
        for _ in sys.stdin:
            start = time.perf_counter()
            detections = len(model(inputs)[0]["instances"])
            elapsed = time.perf_counter() - start
            print(json.dumps({"time_s": elapsed, "detections": detections}), flush=True)


class _Side:
    """A live worker process of one side of one case."""

    def __init__(self, case, side, repo, args):
        command = [sys.executable, __file__, "--worker", "--case", case, "--side", side,
                   "--threads", str(args.threads), "--warmup", str(args.warmup)]
        command += (["--plain"] if args.plain else []) + (["--repo", str(repo)] if repo else [])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, cwd=ROOT)
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {side} worker of {case} failed (exit {self.process.wait()}); "
                             f"run it with --worker to see why")

    def run(self):
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def _measure(case, repo, args):
    """{"reference": [passes], "ours": [passes]} and the detection counts, pass by pass."""
    sides = {"reference": _Side(case, "reference", repo, args),
             "ours": _Side(case, "ours", None, args)}
    times, counts = {"reference": [], "ours": []}, {}
    try:
        for index in range(args.passes):
            order = ("reference", "ours") if index % 2 == 0 else ("ours", "reference")
            for side in order:
                time.sleep(0.05)  # let the other side's threads go idle
                result = sides[side].run()
                times[side].append(result["time_s"])
                counts[side] = result["detections"]
    finally:
        for worker in sides.values():
            worker.close()
    return times, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adelaidet", type=Path, help="AdelaiDet checkout")
    parser.add_argument("--centermask2", type=Path, help="centermask2 checkout")
    parser.add_argument("--cases", nargs="*")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=20, help="timed passes per side")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes per side")
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
    rows = []
    for case in cases:
        times, counts = _measure(case, repos[runner.CASES[case][0]], args)
        ref, ours = (statistics.median(times[s]) for s in ("reference", "ours"))
        paired = statistics.median(o / r for o, r in zip(times["ours"], times["reference"]))
        rows.append({"case": case, "reference_s": ref, "ours_s": ours, "ratio": ours / ref,
                     "median_paired_ratio": paired, "detections": counts,
                     "samples": len(times["ours"]), "times_s": times})
        print(f"{case:26s} reference {ref:.3f} s  ours {ours:.3f} s  ours/reference "
              f"{ours / ref:.2f} (paired {paired:.2f})  detections {counts}", flush=True)
    if args.json:
        from rtinst.benchmark.machine import machine_info

        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        args.json.write_text(json.dumps({
            "what": "inference latency, ours vs reference, same name-seeded weights, "
                    "512x640 seeded picture, configs' score thresholds",
            "command": " ".join(sys.argv), "commit": commit, "threads": args.threads,
            "ours": "as built" if args.plain else "optimize_for_inference",
            "passes": args.passes, "warmup": args.warmup,
            "protocol": "two live workers per case, asked pass by pass in turn",
            "machine": machine_info(),  # the CPU, its widest ISA and any ISA cap in force
            "date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
