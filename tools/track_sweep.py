#!/usr/bin/env python
"""Compare tracker settings on one model's detections: the model runs once over a video dataset
(its detections recorded, or read back with --detections), then each setting tracks them and is
scored by the YouTube-VIS evaluator, as train_net.py --eval-only would.

Settings: --vary KEY=V1,V2 (each value alone, the rest at the base config), --ablation (one row
per tracker rule turned off, docs/tracking.md). Examples:

  python tools/track_sweep.py --config-file configs/BlendMask/MNV2_FPN_shapes.yaml \\
      --dataset shapes_video_train --detections out/blendmask_train.pt \\
      --vary MODEL.TRACKER.HIGH_SCORE_THRESH=0.3,0.4,0.5,0.6 --json sweep.json MODEL.WEIGHTS W
  python tools/track_sweep.py --config-file ... --dataset shapes_video_val --ablation ...
"""
import argparse
import json
import logging
import os
import time

import rtinst  # noqa: F401  (registers rtinst's parts; its get_cfg those of every method)
from rtinst.benchmark.machine import git_commit, machine_info
from rtinst.benchmark.tracking import (evaluate_tracker, load_detections, record_detections,
                                       save_detections)
from rtinst.engine import load_config

# one row per rule turned off: (name, overrides); "{X}" reads key X of the base config
ABLATION = [
    ("all rules (defaults)", []),
    ("no low tier: detections below HIGH_SCORE_THRESH dropped",
     ["MODEL.TRACKER.SCORE_THRESH", "{MODEL.TRACKER.HIGH_SCORE_THRESH}"]),
    ("no tentative births: confirmed at once", ["MODEL.TRACKER.CONFIRM_FRAMES", "1"]),
    ("births from any score: one tier from SCORE_THRESH, births from it",
     ["MODEL.TRACKER.HIGH_SCORE_THRESH", "{MODEL.TRACKER.SCORE_THRESH}",
      "MODEL.TRACKER.BIRTH_SCORE_THRESH", "{MODEL.TRACKER.SCORE_THRESH}"]),
    ("no lost tracks: a missed frame ends a track", ["MODEL.TRACKER.MAX_LOST_FRAMES", "0"]),
    ("no distance stage", ["MODEL.TRACKER.MAX_CENTER_DISTANCE", "0.0"]),
    ("no motion prior", ["MODEL.TRACKER.MOTION", "none"]),
    ("no duplicate suppression", ["MODEL.TRACKER.DUPLICATE_IOU", "1.0"]),
    ("no track merging", ["MODEL.TRACKER.MERGE_IOU", "1.0"]),
    ("no class preference", ["MODEL.TRACKER.CLASS_MISMATCH_COST", "0.0"]),
    ("track score: the mean alone (no length weighting)",
     ["MODEL.TRACKER.TRACK_SCORE_LENGTH_POWER", "0.0"]),
    ("3 class hypotheses per track", ["MODEL.TRACKER.CLASS_HYPOTHESES", "3"]),
    ("Hungarian matching", ["MODEL.TRACKER.MATCHING", "hungarian"]),
    ("greedy matching", ["MODEL.TRACKER.MATCHING", "greedy"]),
    ("the rules before (one tier from 0.05, births from 0.4 at once, lost 5 frames, no motion, "
     "duplicates from 0.5, Hungarian, no merging, mean score, 3 class hypotheses)",
     ["MODEL.TRACKER.SCORE_THRESH", "0.05", "MODEL.TRACKER.HIGH_SCORE_THRESH", "0.05",
      "MODEL.TRACKER.BIRTH_SCORE_THRESH", "0.4", "MODEL.TRACKER.CONFIRM_FRAMES", "1",
      "MODEL.TRACKER.MAX_LOST_FRAMES", "5", "MODEL.TRACKER.MOTION", "none",
      "MODEL.TRACKER.DUPLICATE_IOU", "0.5", "MODEL.TRACKER.MATCHING", "hungarian",
      "MODEL.TRACKER.MERGE_IOU", "1.0", "MODEL.TRACKER.TRACK_SCORE_LENGTH_POWER", "0.0",
      "MODEL.TRACKER.CLASS_HYPOTHESES", "3", "TEST.VIDEO_ID_SCORE_THRESH", "0.3"]),
]
SHOWN = [("AP", "segm", "AP"), ("AP50", "segm", "AP50"), ("IDF1", "tracking", "IDF1"),
         ("IDSW", "tracking", "IDSW"), ("HOTA", "tracking", "HOTA"), ("AssA", "tracking", "AssA"),
         ("ms", "speed", "association_ms")]


def _resolved(cfg, overrides):
    out = []
    for item in overrides:
        if item.startswith("{"):
            node = cfg
            for part in item.strip("{}").split("."):
                node = node[part]
            item = str(node)
        out.append(item)
    return out


def _changed(base, cfg):
    """(key, value) of the tracker and test keys ``cfg`` sets otherwise than ``base``."""
    pairs = [(f"MODEL.TRACKER.{k}", v) for k, v in cfg.MODEL.TRACKER.items()
             if base.MODEL.TRACKER[k] != v]
    if cfg.TEST.VIDEO_ID_SCORE_THRESH != base.TEST.VIDEO_ID_SCORE_THRESH:
        pairs.append(("TEST.VIDEO_ID_SCORE_THRESH", cfg.TEST.VIDEO_ID_SCORE_THRESH))
    return pairs


def settings(cfg, args, parser):
    """(name, config) of every row; a bad --vary is a usage error naming it."""
    rows = list(ABLATION) if args.ablation else [("base", [])]
    for spec in args.vary:
        key, _, values = spec.partition("=")
        if not values:
            parser.error(f"--vary {spec}: expected KEY=V1,V2,...")
        rows += [(f"{key} {value}", [key, value]) for value in values.split(",")]
    out = []
    for name, overrides in rows:
        row_cfg = cfg.clone()
        row_cfg.defrost()
        try:
            row_cfg.merge_from_list(_resolved(cfg, overrides))
        except (KeyError, ValueError, AssertionError) as e:
            parser.error(f"setting '{name}': {e}")
        out.append((name, row_cfg))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", required=True, help="a registered video dataset")
    parser.add_argument("--detections", help="record file: read if it exists, else written")
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2")
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="base config overrides")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config_file, args.opts)
    if args.detections and os.path.exists(args.detections):
        records = load_detections(args.detections)
    else:
        from detectron2.modeling import build_model

        from rtinst.engine.predictor import load_weights

        model = build_model(cfg)
        load_weights(model, cfg.MODEL.WEIGHTS)
        records = record_detections(cfg, model.eval(), args.dataset)
        if args.detections:
            save_detections(records, args.detections)
    rows = []
    print("| setting | " + " | ".join(name for name, _, _ in SHOWN) + " |")
    print("|---|" + "---|" * len(SHOWN))
    rows_to_run = settings(cfg, args, parser)
    for name, run_cfg in rows_to_run:
        start = time.perf_counter()
        results = evaluate_tracker(run_cfg, records, args.dataset)
        task = "segm" if "segm" in results else "bbox"
        values = {label: results[task if group == "segm" else group][key]
                  for label, group, key in SHOWN}
        overrides = [f"{k} {v}" for k, v in _changed(cfg, run_cfg)]
        rows.append({"setting": name, "overrides": overrides, "results": results,
                     "seconds": time.perf_counter() - start})
        print(f"| {name} | " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v)
                                          for v in values.values()) + " |", flush=True)
    if args.json:
        report = {"config_file": args.config_file, "opts": args.opts, "dataset": args.dataset,
                  "commit": git_commit(), "machine": machine_info(),
                  "tracker": {k: v for k, v in cfg.MODEL.TRACKER.items()},
                  "video_id_score_thresh": cfg.TEST.VIDEO_ID_SCORE_THRESH, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
