#!/usr/bin/env python
"""Latency benchmark of rtinst/Detectron2 models against Mask R-CNN and/or RetinaNet baselines,
all measured in this process on the same inputs, interleaved.

Examples:
  python tools/benchmark.py --config-file configs/FCOS/R_50_1x.yaml --input-size 512 --device cuda
  python tools/benchmark.py --baseline mask_rcnn \\
      --config-file zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml --input-size 320 --device cpu \\
      --threads 2 --num-detections 10,50,100 --json out.json --markdown out.md
  python tools/benchmark.py --config-file configs/BlitzMask/blitzmask_MNv2_320.yaml \\
      --baseline mask_rcnn --input-size 320x320 --device cpu --threads 2 --num-detections 10 \\
      --onnx --flops --time-modules head.spanning_set masks
  python tools/benchmark.py --config-file configs/BlendMask/MNV2_FPN_shapes.yaml --baseline none \\
      --video --images FRAMES_OF_ONE_VIDEO --input-size 224 --max-size 400 --threads 2
"""

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

import rtinst  # noqa: F401  (registers rtinst's models; its get_cfg those of every method)
from rtinst.benchmark import (
    BenchmarkSettings,
    ModelSpec,
    fixed_input_size,
    load_images,
    markdown_document,
    markdown_table,
    plot_latency,
    random_images,
    resize_transform,
    run_benchmark,
)
from rtinst.benchmark.detections import detection_counts
from rtinst.engine import load_config
from rtinst.errors import CheckpointError, ConfigError, UnknownModelFamily

logger = logging.getLogger("rtinst.benchmark")

BASELINES = {
    "mask_rcnn": "zoo:COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    "retinanet": "zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        nargs="*",
        default=[],
        metavar="CONFIG",
        help="configs to measure: files or zoo:<Detectron2 model-zoo name>",
    )
    parser.add_argument(
        "--weights",
        nargs="*",
        default=[],
        metavar="FILE",
        help="weights per --config-file, in order ('-' keeps the config's MODEL.WEIGHTS): local "
        "checkpoints, loaded without running code in them and refused when they do not fit the "
        "model (a config's MODEL.WEIGHTS that is not a local file gives random weights)",
    )
    parser.add_argument(
        "--baseline",
        nargs="*",
        default=list(BASELINES),
        metavar="NAME",
        help=f"baselines: {', '.join(BASELINES)}, a config, or none (default: both)",
    )
    parser.add_argument(
        "--input-size",
        default="512",
        help="shorter side (longer side <= --max-size), or HxW for a fixed size",
    )
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument(
        "--images",
        help="image folder, e.g. COCO's val2017 (default: random noise images, whose detection "
        "counts differ from real ones unless --num-detections fixes them)",
    )
    parser.add_argument("--num-images", type=int, default=10)
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed iterations per model (default: one per image, so "
        "that every input shape is seen before timing: a new shape is slower the first time)",
    )
    parser.add_argument(
        "--iters", type=int, default=20, help="timed iterations (one image each) per model"
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's choice)"
    )
    parser.add_argument(
        "--num-detections",
        type=detection_counts,
        metavar="K[,K...]",
        help="fix the detections per image in every model; several values: a sweep",
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="also count GFLOPs (fvcore), with --time-modules those of each named submodule too",
    )
    parser.add_argument(
        "--time-modules",
        nargs="*",
        default=[],
        metavar="NAME",
        help="also report the median time spent inside these submodules (and, with --flops, "
        "their GFLOPs: fvcore counts the operations a module's own forward runs), e.g. blender; "
        "BlitzMask's mask branch: head.spanning_set masks (its Coefficients run at the peaks, "
        "inside head)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also time every exportable non-baseline model exported to ONNX (rtinst.export: "
        "the whole pipeline) and run by ONNX Runtime on the CPU with --threads threads, on the "
        "same inputs, as '<label> [onnxruntime]' (needs --input-size HxW, the graph's size)",
    )
    parser.add_argument(
        "--onnx-int8",
        choices=["dynamic", "static"],
        help="with --onnx (implied), also its INT8 quantization as '<label> [onnxruntime int8]' "
        "(static: activations calibrated on the benchmark images)",
    )
    parser.add_argument(
        "--video",
        action="store_true",
        help="also time every non-baseline model's video path, the model followed by the online "
        "tracker (MODEL.TRACKER.*, taking every detection), as '<label> [video]', with the "
        "association's time per frame; --images should then be one video's frames (in name "
        "order), e.g. a folder of the shapes_video_val frames",
    )
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the report as Markdown")
    parser.add_argument(
        "--plot", metavar="FILE",
        help="draw latency against detections per image here (default: beside --json or "
        "--markdown, as .png)",
    )
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE ... applied to every non-baseline config (must come last)",
    )
    args = parser.parse_args(argv)
    args.baseline = [b for b in args.baseline if b != "none"]
    if not args.config_file and not args.baseline:
        parser.error("nothing to measure: give --config-file and/or --baseline")
    if len(args.opts) % 2:
        parser.error("--opts needs KEY VALUE pairs")
    if args.opts and not args.config_file:
        parser.error("--opts applies to --config-file models only (baselines keep their configs)")
    if args.weights and len(args.weights) != len(args.config_file):
        parser.error("--weights needs one entry per --config-file ('-' for none)")
    for weights in args.weights:
        if weights != "-" and not Path(weights).is_file():
            parser.error(f"--weights: not a file: {weights}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.images and not Path(args.images).is_dir():
        parser.error(f"--images: not a folder: {args.images}")
    if args.warmup is None:
        args.warmup = args.num_images
    if min(args.num_images, args.iters) < 1 or args.warmup < 0:
        parser.error("--num-images and --iters must be >= 1, --warmup >= 0")
    try:
        resize_transform(args.input_size, args.max_size)
    except ValueError as e:
        parser.error(str(e))
    args.onnx = args.onnx or bool(args.onnx_int8)
    if args.onnx and fixed_input_size(args.input_size) is None:
        parser.error("--onnx needs a fixed --input-size HxW (an ONNX graph has one input size)")
    if args.onnx and not args.config_file:
        parser.error("--onnx applies to --config-file models only (baselines are not exported)")
    return args


def unique_label(label, taken):
    """``label``, or ``label#2``, ``label#3``... if already taken."""
    candidate, n = label, 1
    while candidate in taken:
        n += 1
        candidate = f"{label}#{n}"
    taken.add(candidate)
    return candidate


def config_label(spec):
    """Folder/stem: ``FCOS/R_50_1x`` for ``configs/FCOS/R_50_1x.yaml`` (or ``zoo:`` names)."""
    path = Path(spec.removeprefix("zoo:"))
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def model_specs(args):
    """Baselines (own config, no --opts) then the configs (with --weights and --opts)."""
    taken, specs = set(), []
    for name in args.baseline:
        config = BASELINES.get(name, name)
        label = unique_label(name if name in BASELINES else config_label(name), taken)
        specs.append(
            ModelSpec(label, config, load_config(config, device=args.device), baseline=True)
        )
    for config, weights in zip(args.config_file, args.weights or ["-"] * len(args.config_file)):
        opts = list(args.opts) + ([] if weights == "-" else ["MODEL.WEIGHTS", weights])
        specs.append(
            ModelSpec(
                unique_label(config_label(config), taken),
                config,
                load_config(config, opts, device=args.device),
            )
        )
    return specs


def benchmark_images(args):
    """(images, description of their source)."""
    if args.images:
        images = load_images(args.images, args.num_images)
        return images, str(args.images)
    logger.warning(
        "no image folder: using random noise images (detection counts may differ from real ones)"
    )
    return random_images(args.num_images), "random noise images"


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rtinst").setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        specs = model_specs(args)
        images, source = benchmark_images(args)
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"benchmark.py: error: {e}")
    settings = BenchmarkSettings(
        input_size=args.input_size,
        max_size=args.max_size,
        warmup=args.warmup,
        iters=args.iters,
        num_detections=args.num_detections or (None,),
        flops=args.flops,
        time_modules=tuple(args.time_modules),
        onnx=args.onnx,
        onnx_int8=args.onnx_int8,
        video=args.video,
    )
    try:
        report = run_benchmark(specs, images, settings, image_source=source)
    except UnknownModelFamily as e:
        sys.exit(f"benchmark.py: error: --num-detections: {e}")
    except CheckpointError as e:
        sys.exit(f"benchmark.py: error: {e}")
    report["command"] = " ".join(sys.argv if argv is None else ["tools/benchmark.py", *argv])
    print(markdown_table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown_document(report))
    plot = args.plot or next(
        (Path(f).with_suffix(".png") for f in (args.json, args.markdown) if f), None
    )
    if plot:
        print(f"latency plot: {plot_latency(report, plot)}")


if __name__ == "__main__":
    main()
