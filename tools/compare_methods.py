#!/usr/bin/env python
"""Trains and evaluates several configs in one run, each with the same overrides (seed, schedule,
inputs), through train_net.py, prints their COCO box and mask AP side by side and writes the
comparison page ``<output>/report.html``: the table (with latency from a ``tools/benchmark.py``
JSON given by ``--benchmark``), the runs' curves overlaid, a speed / accuracy plot and each
run's per-class, PR, confusion-matrix and gallery pictures side by side. ``--runs`` adds
finished runs (train_net.py output folders) without training them.

Each config's result is saved in its output folder (``result.json``) as soon as it is evaluated.
``--resume`` continues an interrupted comparison: saved results are reused, and the config that
was training continues from its last checkpoint (``train_net.py --resume``; add e.g.
``SOLVER.CHECKPOINT_PERIOD 50`` to the overrides so that little is lost to a kill). A folder
whose ``config.yaml`` differs from what its config and the overrides give now is refused.

Examples (BlendMask against Detectron2's Mask R-CNN on the same MobileNetV2-FPN, embedded data;
then two finished runs with their latencies):
  python tools/compare_methods.py --output output/compare --markdown compare.md \\
      --config-file configs/Mask-RCNN/MNV2_FPN_shapes.yaml configs/BlendMask/MNV2_FPN_shapes.yaml \\
      --opts SEED 0
  python tools/compare_methods.py --output output/page --runs output/fcos output/blendmask \\
      --benchmark bench.json
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
    parser.add_argument("--config-file", nargs="+", default=[], metavar="CONFIG",
                        help="configs to train and evaluate")
    parser.add_argument("--runs", nargs="+", default=[], metavar="[NAME=]FOLDER",
                        help="finished runs (train_net.py OUTPUT_DIRs) to compare as they are; "
                             "NAME defaults to the folder's name")
    parser.add_argument("--benchmark", metavar="JSON",
                        help="a tools/benchmark.py --json report: each run's latency is the "
                             "median of its config's row (or the row labelled as the run)")
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
    if not args.config_file and not args.runs:
        parser.error("nothing to compare: give --config-file and/or --runs")
    missing = [c for c in args.config_file if not Path(c).is_file()]
    if missing:
        parser.error(f"config file not found: {', '.join(missing)}")
    try:
        args.runs = dict(finished_run(spec) for spec in args.runs)
    except ValueError as e:
        parser.error(str(e))
    if args.benchmark and not Path(args.benchmark).is_file():
        parser.error(f"--benchmark: file not found: {args.benchmark}")
    if len(args.opts) % 2:
        parser.error("--opts needs KEY VALUE pairs")
    return args


def finished_run(spec):
    """``NAME=FOLDER`` or ``FOLDER`` -> (name, folder); a ``ValueError`` naming a folder that
    holds no finished run."""
    name, sep, folder = spec.partition("=")
    if not sep:
        name, folder = Path(spec).name, spec
    folder = Path(folder)
    if not (folder / "metrics.json").is_file() and not (folder / "results.csv").is_file():
        raise ValueError(f"--runs: {folder} holds no finished run (no metrics.json or "
                         "results.csv)")
    return name, folder


def benchmark_latencies(path, runs):
    """{run name: median ms} from a ``tools/benchmark.py`` JSON: the first PyTorch (not video)
    row whose config is the run's, or whose label (``Folder/stem``) names it; ``runs`` is
    {name: config or None}."""
    report = json.loads(Path(path).read_text())
    rows = [r for r in report.get("models", [])
            if r.get("runtime", "pytorch") == "pytorch" and not r.get("video")]
    found = {}
    for name, config in runs.items():
        for row in rows:
            if (config and row.get("config") == config) or \
                    row.get("label", "").replace("/", "_") == name:
                found[name] = row["median_ms"]
                break
    return found


def final_results(output_dir):
    """The last evaluation of the run in ``output_dir`` (its metrics.json; results.csv for an
    ``--eval-only`` folder): {"bbox": {...}, "segm": {...}}."""
    # only here: the tool's other paths need no torch
    from rtinst.reports.comparison import run_rows
    from rtinst.reports.training_log import final_evaluation

    last = final_evaluation(run_rows(output_dir))
    if "bbox/AP" not in last:
        raise RuntimeError(f"{output_dir} holds no evaluation (is DATASETS.TEST set?)")
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


def markdown_table(rows, latencies=()):
    """One line per result row; a latency column when ``latencies`` (ms per row) has any."""
    latencies = list(latencies) or [None] * len(rows)
    with_latency = any(ms is not None for ms in latencies)
    header = ["config", "box AP", "box AP50", "mask AP", "mask AP50", "mask AP75", "train+eval s"]
    header += ["latency ms"] * with_latency
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, ms in zip(rows, latencies):
        box, mask = row.get("bbox", {}), row.get("segm", {})
        values = [box.get("AP"), box.get("AP50"), mask.get("AP"), mask.get("AP50"),
                  mask.get("AP75"), row["seconds"]] + [ms] * with_latency
        cells = [row["config"]] + ["–" if v is None else f"{v:.1f}" for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    rows, folders, configs = [], {}, {}
    for config in args.config_file:
        output_dir = Path(args.output) / run_name(config)
        row = None
        if args.resume:
            row = saved_result(output_dir, config, args.opts)
            check_unchanged(output_dir, config, args.opts)
        if row is None:
            row = train_and_evaluate(config, output_dir, args.num_gpus, args.opts, args.resume)
        rows.append(row)
        folders[run_name(config)], configs[run_name(config)] = output_dir, config
    for name, folder in args.runs.items():
        rows.append({"config": name, "opts": None, "seconds": None, **final_results(folder)})
        folders[name], configs[name] = folder, None
    latency = benchmark_latencies(args.benchmark, configs) if args.benchmark else {}
    table = markdown_table(rows, [latency.get(name) for name in folders])
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(
            f"Same overrides for every config: {' '.join(args.opts) or '(none)'}\n\n{table}\n"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    from rtinst.reports import write_comparison  # only here: the tool's other paths need no torch

    note = f"Same overrides for every trained config: {' '.join(args.opts) or '(none)'}."
    page = write_comparison(folders, args.output, latency, note)["report"]
    print(f"comparison page: {page}")


if __name__ == "__main__":
    main()
