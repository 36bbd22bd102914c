#!/usr/bin/env python
"""Where an exported model spends its time on the CPU: the whole export pipeline (``rtinst.export``:
preprocessing, network, post-processing) timed by ONNX Runtime against a floor, the model's
bottom-up network alone (e.g. MobileNetV2) exported at the same size, interleaved in one run;
then ONNX Runtime's own per-op profile of each graph, summed by op type and by the part of the
model its nodes come from (the module that traced them; "(pipeline)" for the glue outside any:
normalisation, peak or box decoding, NMS, top-k).

  python tools/onnx_profile.py --config-file configs/BlitzMask/blitzmask_MNv2_320.yaml \\
      --size 320 320 --num-detections 10,100 --threads 2 --json out.json

A config's MODEL.WEIGHTS that is a local file is loaded (never running code in it); otherwise
the model is seeded-random with its normalisation calibrated on one image, as
``tools/benchmark.py`` measures untrained models. ``--num-detections`` fixes the detections per
image (no score threshold, exactly K kept), so that the mask stage's cost is measured at K.
"""
import argparse
import collections
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rtinst.benchmark.detections import detection_counts, fix_detection_count
from rtinst.benchmark.machine import git_commit, machine_info
from rtinst.benchmark.model import build_eval_model
from rtinst.engine import load_config
from rtinst.errors import ConfigError
from rtinst.export import export_onnx
from rtinst.export.onnx_predictor import open_session
from rtinst.export.pipeline import INPUT_NAMES
from rtinst.export.onnx_graph import write_graph

FLOOR = "bottom-up alone"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 320), metavar=("H", "W"))
    parser.add_argument("--num-detections", type=detection_counts, default=(10,),
                        metavar="K[,K...]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=60, help="timed passes of each graph")
    parser.add_argument("--profile-iters", type=int, default=20,
                        help="passes profiled per graph (0: no profile)")
    parser.add_argument("--json", metavar="FILE", help="write the report here")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE ... config overrides (must come last)")
    args = parser.parse_args(argv)
    if min(args.iters, *args.size) < 1 or args.profile_iters < 0:
        parser.error("--iters and --size must be >= 1, --profile-iters >= 0")
    return args


class BottomUp(torch.nn.Module):
    """The backbone's bottom-up network on a normalised (1, 3, H, W) image: its feature maps."""

    def __init__(self, backbone):
        super().__init__()
        self.bottom_up = getattr(backbone, "bottom_up", backbone)

    def forward(self, images):
        return tuple(self.bottom_up(images).values())


def export_graphs(args, folder: Path):
    """{label: (ONNX file, feeds)}: the pipeline at each K and the floor."""
    height, width = args.size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    chw = torch.from_numpy(image).permute(2, 0, 1).float()
    graphs = {}
    for k in args.num_detections:
        cfg = load_config(args.config_file, list(args.opts) + ["MODEL.DEVICE", "cpu"])
        cfg.defrost()
        fix_detection_count(cfg, k)
        model, _ = build_eval_model(cfg, [{"image": chw, "height": height, "width": width}])
        path = export_onnx(model, folder / f"pipeline_{k}.onnx", height, width, cfg.INPUT.FORMAT)
        feeds = dict(zip(INPUT_NAMES, (image, np.array([height, width], np.int64))))
        graphs[f"pipeline, {k} detections"] = (path, feeds)
    normalised = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    floor = write_graph(BottomUp(model.backbone).eval(), (normalised,), folder / "floor.onnx",
                        ["images"], [], {"input_size": f"{height},{width}"}, 17)
    graphs[FLOOR] = (floor, {"images": normalised.numpy()})
    return graphs


def median_times(sessions, iters):
    """{label: median ms}, the graphs run in turn ``iters`` times after one warm-up each."""
    times = collections.defaultdict(list)
    for session, feeds in sessions.values():
        session.run(None, feeds)
    for _ in range(iters):
        for label, (session, feeds) in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            times[label].append((time.perf_counter() - start) * 1000.0)
    return {label: float(np.median(t)) for label, t in times.items()}


def part_of(node_name: str) -> str:
    """The module a traced node came from ("backbone.bottom_up", "backbone", "heatmap", ...: the
    outermost module called by the pipeline's own code), "(layout reorders)" for those ONNX
    Runtime inserts, "(pipeline)" for nodes outside any module (named after their op, as
    "/TopK" or, fused, "Gather_3/GatherSliceToSplitFusion")."""
    if node_name.startswith("Reorder"):
        return "(layout reorders)"
    parts = node_name.strip("/").split("/")
    if len(parts) == 1 or re.fullmatch(r"[A-Z][A-Za-z]*(_\d+)?", parts[0]):
        return "(pipeline)"
    if parts[0] == "backbone" and len(parts) > 2 and parts[1] == "bottom_up":
        return "backbone.bottom_up"
    return parts[0].split(".")[0]  # "size.0.0.1": a child of "size" called on its own


def profile(path, feeds, threads, iters):
    """(by op type, by part): {name: [ms per pass, nodes]} from ONNX Runtime's profiler."""
    session, _ = open_session(path, threads, profile_prefix=str(Path(path).with_suffix("")))
    for _ in range(iters):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op, by_part = {}, {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        name = event["name"][:-len("_kernel_time")]
        for table, key in ((by_op, event["args"]["op_name"]), (by_part, part_of(name))):
            row = table.setdefault(key, [0.0, set()])
            row[0] += event["dur"] / 1000.0 / iters
            row[1].add(name)
    return [{key: [round(ms, 3), len(nodes)] for key, (ms, nodes) in
             sorted(table.items(), key=lambda item: -item[1][0])} for table in (by_op, by_part)]


def main(argv=None):
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as folder:
            graphs = export_graphs(args, Path(folder))
            sessions = {label: (open_session(path, args.threads)[0], feeds)
                        for label, (path, feeds) in graphs.items()}
            medians = median_times(sessions, args.iters)
            profiles = {label: profile(path, feeds, args.threads, args.profile_iters)
                        for label, (path, feeds) in graphs.items()} if args.profile_iters else {}
    except (ConfigError, TypeError, ValueError) as e:
        sys.exit(f"onnx_profile.py: error: {e}")
    report = {
        "config": args.config_file, "opts": args.opts, "size": list(args.size),
        "threads": args.threads, "iters": args.iters, "commit": git_commit(),
        "machine": machine_info(), "onnxruntime": __import__("onnxruntime").__version__,
        "median_ms": {label: round(ms, 3) for label, ms in medians.items()},
        "ratio_to_floor": {label: round(ms / medians[FLOOR], 3) for label, ms in medians.items()},
        "profile": {label: {"by_op": by_op, "by_part": by_part}
                    for label, (by_op, by_part) in profiles.items()},
    }
    for label, ms in medians.items():
        print(f"{label}: {ms:.2f} ms ({report['ratio_to_floor'][label]:.2f}x the floor)")
    for label, tables in report["profile"].items():
        parts = ", ".join(f"{part} {ms:.2f}" for part, (ms, _) in tables["by_part"].items())
        print(f"{label} profile (ms per pass): {parts}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
