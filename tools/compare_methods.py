#!/usr/bin/env python
"""Trains and evaluates several configs in one run, each with the same overrides (seed, schedule,
inputs), through train_net.py, and prints their COCO box and mask AP side by side.

Each config's result is saved in its output folder (``result.json``) as soon as it is evaluated.
``--resume`` continues an interrupted comparison: saved results are reused, and the config that
was training continues from its last checkpoint (``train_net.py --resume``; add e.g.
``SOLVER.CHECKPOINT_PERIOD 50`` to the overrides so that little is lost to a kill). A folder
whose ``config.yaml`` differs from what its config and the overrides give now is refused.

Example (BlendMask against Detectron2's Mask R-CNN on the same MobileNetV2-FPN, embedded data):
  python tools/compare_methods.py --output output/compare --markdown compare.md \\
      --config-file configs/Mask-RCNN/MNV2_FPN_shapes.yaml configs/BlendMask/MNV2_FPN_shapes.yaml \\
      --opts SEED 0
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULT_FILE = "result.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", nargs="+", required=True, metavar="CONFIG")
    parser.add_argument("--output", required=True, help="folder; one OUTPUT_DIR per config")
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--resume", action="store_true",
                        help="reuse saved results; continue an unfinished config from its "
                             "last checkpoint")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table here")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[],
        help="KEY VALUE ... applied to every config (must come last)",
    )
    args = parser.parse_args(argv)
    missing = [c for c in args.config_file if not Path(c).is_file()]
    if missing:
        parser.error(f"config file not found: {', '.join(missing)}")
    if len(args.opts) % 2:
        parser.error("--opts needs KEY VALUE pairs")
    return args


def final_results(output_dir):
    """The last evaluation in ``output_dir``/metrics.json: {"bbox": {...}, "segm": {...}}."""
    path = Path(output_dir) / "metrics.json"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    evaluated = [r for r in records if "bbox/AP" in r]
    if not evaluated:
        raise RuntimeError(f"{path} holds no evaluation (is DATASETS.TEST set?)")
    last = evaluated[-1]
    return {
        task: {m: last[f"{task}/{m}"] for m in METRICS if f"{task}/{m}" in last}
        for task in ("bbox", "segm")
        if f"{task}/AP" in last
    }


def run_name(config):
    """``BlendMask_MNV2_FPN_shapes`` for ``configs/BlendMask/MNV2_FPN_shapes.yaml``."""
    path = Path(config)
    return f"{path.parent.name}_{path.stem}"


def saved_result(output_dir, config, opts):
    """The result saved by an earlier run of the same comparison, or None if there is none.

    A result made with other overrides would not be comparable: that is an error, not a rerun.
    """
    path = Path(output_dir) / RESULT_FILE
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    if row.get("config") != config or row.get("opts") != list(opts):
        raise SystemExit(
            f"{path} holds a result of {row.get('config')} with overrides {row.get('opts')}, "
            f"not of {config} with {list(opts)}: use another --output, or remove that folder"
        )
    return row


def config_changes(output_dir, config, opts):
    """The keys whose value differs between the config ``output_dir`` was trained with (its
    ``config.yaml``) and what ``config`` + ``opts`` give now, as "KEY: then -> now" lines.

    An edited config file or a changed default would otherwise let a saved result or checkpoint
    stand for a model it is not."""
    saved = Path(output_dir) / "config.yaml"
    if not saved.is_file():
        return []
    # only here: the tool's other paths need no torch
    from detectron2.evaluation.testing import flatten_results_dict
    from rtinst.engine import load_config

    def flat(tree):  # {"MODEL.FPN.NORM": ...}
        return {k.replace("/", "."): v for k, v in flatten_results_dict(tree).items()}

    now = flat(yaml.safe_load(load_config(config, [*opts, "OUTPUT_DIR", str(output_dir)]).dump()))
    then = flat(yaml.safe_load(saved.read_text()))
    return [f"{key}: {then.get(key, '(absent)')} -> {now.get(key, '(absent)')}"
            for key in sorted(set(now) | set(then)) if now.get(key) != then.get(key)]


def check_unchanged(output_dir, config, opts):
    """Exits naming the changed keys if ``output_dir`` was trained with other settings."""
    changes = config_changes(output_dir, config, opts)
    if changes:
        raise SystemExit(
            f"{output_dir} was trained with other settings than {config} gives now "
            f"({'; '.join(changes)}): remove that folder to train it again"
        )


def train_and_evaluate(config, output_dir, num_gpus, opts, resume=False):
    """Trains and evaluates one config; with ``resume`` continues from its last checkpoint.

    ``seconds`` is the wall time of this call only, so it is None for a continued run."""
    resumed = resume and (Path(output_dir) / "last_checkpoint").is_file()
    cmd = [sys.executable, str(ROOT / "train_net.py"), "--config-file", config,
           "--num-gpus", str(num_gpus), *(["--resume"] if resume else []),
           *opts, "OUTPUT_DIR", str(output_dir)]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    seconds = None if resumed else time.perf_counter() - start
    row = {"config": config, "opts": list(opts), "seconds": seconds, **final_results(output_dir)}
    (Path(output_dir) / RESULT_FILE).write_text(json.dumps(row, indent=2) + "\n")
    return row


def markdown_table(rows):
    header = ["config", "box AP", "box AP50", "mask AP", "mask AP50", "mask AP75", "train+eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        box, mask = row.get("bbox", {}), row.get("segm", {})
        cells = [row["config"]] + [
            "–" if v is None else f"{v:.1f}"
            for v in (box.get("AP"), box.get("AP50"), mask.get("AP"), mask.get("AP50"),
                      mask.get("AP75"), row["seconds"])
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for config in args.config_file:
        output_dir = Path(args.output) / run_name(config)
        row = None
        if args.resume:
            row = saved_result(output_dir, config, args.opts)
            check_unchanged(output_dir, config, args.opts)
        if row is None:
            row = train_and_evaluate(config, output_dir, args.num_gpus, args.opts, args.resume)
        rows.append(row)
    table = markdown_table(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(
            f"Same overrides for every config: {' '.join(args.opts) or '(none)'}\n\n{table}\n"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
