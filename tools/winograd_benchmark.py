#!/usr/bin/env python
"""Time rtinst's Winograd 3 x 3 convolution (``rtinst.modeling.layers.winograd_conv``) against
PyTorch's (oneDNN, channels-last weights as ``optimize_for_inference`` keeps them) on the
convolution shapes of the FCOS / BlendMask / CenterMask models at 512 x 640, interleaved in
this process; prints each shape's medians, their ratio and the largest relative difference.

    python tools/winograd_benchmark.py --threads 2 --repeats 9 --json out.json
"""
import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rtinst.modeling.layers.winograd_conv import use_winograd, winograd_conv3x3, winograd_kernel

# (batch, in channels, out channels, height, width): ResNet-50 / VoVNet stages, FPN levels,
# FCOS towers (256 or 128 channels), the CenterMask mask head on 50 RoIs
SHAPES = [(1, 64, 64, 128, 160), (1, 128, 128, 64, 80), (1, 256, 256, 32, 40),
          (1, 512, 512, 16, 20), (1, 128, 128, 128, 160), (1, 160, 160, 64, 80),
          (1, 192, 192, 32, 40), (1, 224, 224, 16, 20), (1, 256, 160, 64, 80),
          (1, 256, 256, 64, 80), (1, 256, 80, 64, 80), (1, 256, 256, 16, 20), (1, 256, 256, 8, 10),
          (1, 128, 128, 32, 40), (1, 128, 128, 16, 20), (50, 256, 256, 14, 14),
          (50, 128, 128, 14, 14), (1, 224, 224, 32, 40)]


def _warm_seconds(function):
    """The time of a call of ``function`` right after an untimed one (caches warm)."""
    function()
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for n, cin, cout, h, w in SHAPES:
            x = torch.randn(n, cin, h, w, generator=generator).relu()
            x = x.contiguous(memory_format=torch.channels_last)
            weight = torch.randn(cout, cin, 3, 3, generator=generator) * (2 / (9 * cin)) ** 0.5
            bias = torch.randn(cout, generator=generator)
            dense_weight = weight.contiguous(memory_format=torch.channels_last)
            kernel = winograd_kernel(weight)
            exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
            scale = exact.abs().max().item()
            errors = {
                "direct": (F.conv2d(x, dense_weight, bias, padding=1) - exact).abs().max().item(),
                "winograd": (winograd_conv3x3(x, kernel, bias) - exact).abs().max().item()}
            direct, winograd = [], []
            for _ in range(args.repeats):  # interleaved, so drifts in machine speed cancel
                direct.append(_warm_seconds(lambda: F.conv2d(x, dense_weight, bias, padding=1)))
                winograd.append(_warm_seconds(lambda: winograd_conv3x3(x, kernel, bias)))
            row = {"shape": [n, cin, cout, h, w], "locations": n * h * w,
                   "direct_ms": 1e3 * statistics.median(direct),
                   "winograd_ms": 1e3 * statistics.median(winograd),
                   "relative_error": {k: v / scale for k, v in errors.items()}}
            row["ratio"] = row["winograd_ms"] / row["direct_ms"]
            row["use_winograd"] = use_winograd(cin, cout, n, h, w)
            rows.append(row)
            print(f"{n:3d} x {cin:3d} -> {cout:3d} @ {h:3d} x {w:3d}: direct "
                  f"{row['direct_ms']:6.1f} ms  winograd {row['winograd_ms']:6.1f} ms  ratio "
                  f"{row['ratio']:.2f}  rel. error {row['relative_error']['winograd']:.1e} "
                  f"(direct {row['relative_error']['direct']:.1e})  used {row['use_winograd']}",
                  flush=True)
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip()
        args.json.write_text(json.dumps({
            "what": "3x3 conv, stride 1, padding 1: rtinst Winograd F(4x4,3x3) vs F.conv2d "
                    "(oneDNN, channels-last)", "command": "python tools/winograd_benchmark.py "
                    f"--threads {args.threads} --repeats {args.repeats}", "commit": commit,
            "machine": platform.processor() or platform.machine(), "threads": args.threads,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows},
            indent=1) + "\n")


if __name__ == "__main__":
    main()
