#!/usr/bin/env python
"""Times YOLACT's Fast NMS against standard NMS (torchvision's batched greedy NMS) on the same
candidates (YOLACT Sec. 3.4 / Table 2b: Fast NMS saves 12 ms per image over a standard NMS on a
Titan Xp), in one process, interleaved, and writes the medians as JSON.

The candidates are what YOLACT's detector hands to NMS: ``--candidates`` boxes (those whose best
class passes the confidence threshold), each with a score for every one of ``--classes``
classes. They are drawn around a few objects, as detections cluster on objects, with seeded
random boxes and softmax scores.

Example:
  python projects/YOLACT/tools/nms_benchmark.py --candidates 200,1000,5000 --threads 2 \\
      --json benchmarks/yolact_nms_cpu.json
"""
import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from yolact.fast_nms import fast_nms, standard_nms


def candidates(n: int, num_classes: int, num_objects: int = 10, image_size: int = 550,
               seed: int = 0):
    """(n, 4) boxes jittered around ``num_objects`` objects and (num_classes, n) scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(num_objects, 2, generator=g) * image_size
    sizes = 30 + torch.rand(num_objects, 2, generator=g) * 150
    which = torch.randint(num_objects, (n,), generator=g)
    jitter = 1 + 0.3 * torch.randn(n, 4, generator=g)
    cxcy = centres[which] + sizes[which] * 0.2 * jitter[:, :2]
    wh = sizes[which] * jitter[:, 2:].abs()
    boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=1)
    logits = torch.randn(n, num_classes + 1, generator=g) * 2
    scores = logits.softmax(dim=1)[:, 1:].t().contiguous()
    return boxes, scores


def elapsed_ms(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="200,1000,5000",
                        help="comma-separated candidate counts")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = dict(iou_threshold=0.5, top_k=200, max_detections=100)
    rows = []
    for n in (int(v) for v in args.candidates.split(",")):
        boxes, scores = candidates(n, args.classes)
        for _ in range(3):  # warm-up
            fast_nms(boxes, scores, **settings)
            standard_nms(boxes, scores, score_threshold=0.05, **settings)
        fast, standard = [], []
        for _ in range(args.repeats):  # interleaved
            fast.append(elapsed_ms(lambda: fast_nms(boxes, scores, **settings)))
            standard.append(elapsed_ms(
                lambda: standard_nms(boxes, scores, score_threshold=0.05, **settings)))
        row = {"candidates": n, "classes": args.classes,
               "fast_nms_ms": statistics.median(fast),
               "standard_nms_ms": statistics.median(standard),
               "fast_kept": len(fast_nms(boxes, scores, **settings)[0]),
               "standard_kept": len(standard_nms(boxes, scores, score_threshold=0.05,
                                                 **settings)[0])}
        row["saved_ms"] = row["standard_nms_ms"] - row["fast_nms_ms"]
        rows.append(row)
        print(f"{n:6d} candidates x {args.classes} classes: Fast NMS {row['fast_nms_ms']:.2f} ms"
              f" ({row['fast_kept']} kept), standard NMS {row['standard_nms_ms']:.2f} ms "
              f"({row['standard_kept']} kept), saved {row['saved_ms']:.2f} ms")
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        report = {"tool": "projects/YOLACT/tools/nms_benchmark.py", "commit": commit,
                  "machine": platform.processor() or platform.machine(),
                  "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "settings": settings, "repeats": args.repeats, "rows": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
