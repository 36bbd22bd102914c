#!/usr/bin/env python
"""Where a YolactEdge frame's time goes: the median time of each part of a keyframe (the whole
backbone and FPN) and of a non-keyframe (the backbone up to C3, FlowNetMini, the warp, P3 and
SPA), and of what both run (ProtoNet and head), on one random input, as JSON. It says whether
keyframes can pay: what a non-keyframe skips must cost more than the flow and warp it adds.

Example:
  python projects/YOLACT/tools/keyframe_parts.py \\
      --config-file configs/YolactEdge/yolactedge_R_101_550.yaml --size 550 --threads 2 \\
      DATASETS.TRAIN "()" DATASETS.TEST "()"
"""
import argparse
import json
import statistics
import time

import torch
from detectron2.modeling import build_model

from rtinst.benchmark.machine import git_commit, machine_info
from rtinst.engine import load_config


def median_ms(function, iterations: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--size", type=int, required=True, help="square network input side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    model = build_model(cfg).eval()
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    features, kept = model.keyframe_features(x)
    lateral = model.current_lateral(x)
    parts = {
        "keyframe: backbone + FPN": lambda: model.keyframe_features(x),
        "non-keyframe: backbone to C3 + lateral": lambda: model.current_lateral(x),
        "non-keyframe: FlowNetMini": lambda: model.flow_net(lateral, kept.lateral),
        "non-keyframe: flow, warp, P3, SPA": lambda: model.warped_sums(lateral, kept),
        "non-keyframe: backbone + FPN": lambda: model.warped_features(x, kept),
        "both: ProtoNet + head": lambda: model.predict_from_features(features, x.shape[-2:]),
    }
    result = {"config": args.config_file, "opts": args.opts, "size": args.size,
              "threads": args.threads, "iterations": args.iters,
              "median_ms": {name: median_ms(f, args.iters) for name, f in parts.items()},
              "commit": git_commit(), "machine": machine_info()}
    print(json.dumps(result["median_ms"], indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
