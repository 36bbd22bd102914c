#!/usr/bin/env python
"""Exports a model's whole inference pipeline (preprocessing, network, decoding, NMS, mask
stage, thresholding) to ONNX, checks it, and compares it with PyTorch: on each image, the
``Predictor``'s instances against the ``ONNXPredictor``'s (matched as sets: score, box, mask IoU,
unmatched instances). The graph's size defaults to the model's own test size (printed); the
FCOS family's and BlitzMask's graphs take any size (padded as Detectron2 pads). A video model's
pipeline (keyframe and frame graphs with state) writes one file per graph and is compared frame
by frame with the PyTorch pipeline over the images taken as one video's frames.

Examples:
  python tools/export_onnx.py --config-file configs/BlitzMask/blitzmask_MNv2_320.yaml \\
      --output out/blitzmask.onnx --opts MODEL.WEIGHTS model_final.pth
  python tools/export_onnx.py --config-file configs/BlitzMask/MNV2_shapes.yaml \\
      --output out/b.onnx --quantize static --evaluate shapes_val --opts MODEL.WEIGHTS m.pth
  python tools/export_onnx.py --config-file configs/BlitzMask/MNV2_shapes.yaml \\
      --output out/b.onnx --dataset mine_val=ann/val.json,img/val --evaluate mine_val \\
      --opts MODEL.WEIGHTS m.pth

MODEL.WEIGHTS loads as rtinst.engine.Predictor loads it (no code in the file runs; a checkpoint
that does not fit the model is refused); a model without an export pipeline is refused before
anything is loaded; --evaluate is checked before anything is exported, and gives the ONNX
model(s)' AP next to the Predictor's.
"""
import argparse
import json
import logging
import sys
import time

import numpy as np
import torch

# rtinst first: importing it checks the detectron2 build before any detectron2 code runs, and
# registers rtinst's models (its get_cfg those of every method)
import rtinst  # noqa: F401, I001
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from rtinst.benchmark.inputs import list_images, random_images
from rtinst.engine import load_config
from rtinst.engine.predictor import Predictor, load_weights
from rtinst.errors import CheckpointError, ConfigError, DatasetError
from rtinst.export import (
    ONNXPredictor,
    PipelineVideo,
    VideoONNXPredictor,
    compare_instances,
    compare_outputs,
    evaluate_onnx,
    export_onnx,
    export_pipeline,
    quantize_onnx,
)
from rtinst.export.graphs import declares_graphs
from rtinst.export.pipeline import size_divisibility
from rtinst.methods import find_part

logger = logging.getLogger("rtinst.export")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="input size (default: the model's test size, printed)")
    parser.add_argument("--images",
                        help="folder of images for the parity check, static calibration and "
                             "--time (default: random noise images; calibrate on real ones)")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--quantize", choices=["dynamic", "static"],
                        help="also write an INT8 model next to --output (*.int8.onnx)")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=JSON,IMAGE_DIR",
                        help="register a COCO-format dataset under NAME (e.g. for --evaluate)")
    parser.add_argument("--evaluate", metavar="DATASET",
                        help="COCO AP of the ONNX model(s) on this registered dataset (its "
                             "class count is the model's; checked before exporting)")
    parser.add_argument("--time", type=int, default=0, metavar="ROUNDS",
                        help="median time of the graph alone (letterboxed --images in, outputs "
                             "at the export size) over ROUNDS passes over the images")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE ... (must come last)")
    return parser.parse_args(argv)


def load_model(cfg):
    """The model of ``cfg`` in eval mode with ``cfg.MODEL.WEIGHTS`` loaded as ``Predictor`` loads
    them (``load_weights``: a ``CheckpointError`` for a file that cannot be used; a warning when
    empty: random weights are exported)."""
    model = build_model(cfg).eval()
    load_weights(model, cfg.MODEL.WEIGHTS)
    return model


def check_evaluation_dataset(name):
    """A ``DatasetError`` unless ``name`` is a registered dataset with annotated images."""
    if name not in DatasetCatalog.list():
        builtin = ("coco_", "lvis_", "keypoints_", "cityscapes_", "voc_", "ade20k_")
        known = ", ".join(sorted(n for n in DatasetCatalog.list() if not n.startswith(builtin)))
        raise DatasetError(
            f"--evaluate {name}: not a registered dataset (register yours with --dataset "
            f"{name}=ANNOTATIONS.json,IMAGE_DIR; registered: {known}, and Detectron2's COCO, "
            "LVIS, Cityscapes, VOC, ADE20K splits)")
    try:
        records = DatasetCatalog.get(name)
    except (OSError, ValueError, KeyError, AssertionError) as e:  # load_coco_json's errors
        raise DatasetError(f"--evaluate {name}: cannot load it ({type(e).__name__}: {e})") from e
    if not records:
        raise DatasetError(f"--evaluate {name}: the dataset has no images")
    if not any(record.get("annotations") for record in records):
        raise DatasetError(f"--evaluate {name}: the dataset has no annotations (COCO AP needs "
                           "ground truth)")


def sample_images(folder, count, height, width):
    """``count`` BGR images of ``folder``, or random noise images of the export size without one
    (a warning: INT8 ranges calibrated on noise are poor)."""
    if folder is None:
        logger.warning("no --images: checking parity on random noise images")
        return random_images(count, height, width)
    paths = list_images(folder)[:count]
    if not paths:
        raise FileNotFoundError(f"--images {folder}: no images found")
    return [read_image(str(p), format="BGR") for p in paths]


def default_size(cfg, model):
    """The model's own test size: its square network input (``input_size``, e.g. YOLACT's),
    else INPUT.MAX_SIZE_TEST squared, rounded up to the backbone's size divisibility (a picture
    resized by the Predictor fits whatever its aspect ratio)."""
    side = getattr(model, "input_size", None)
    if isinstance(side, int):
        return side, side
    divisibility = size_divisibility(model)
    side = -(-cfg.INPUT.MAX_SIZE_TEST // divisibility) * divisibility
    return side, side


def check_parity(cfg, model, predictor, images):
    """Per image, the ``Predictor``'s instances against the ``ONNXPredictor``'s
    (``compare_instances``); for a ``VideoONNXPredictor``, the PyTorch pipeline and ONNX Runtime
    on the same input, the images being one video's frames, each side carrying its state."""
    if not isinstance(predictor, VideoONNXPredictor):
        reference = Predictor(cfg)
        return [compare_instances(reference(image)["instances"], predictor(image)["instances"])
                for image in images]
    pipeline = PipelineVideo(export_pipeline(model, predictor.height, predictor.width),
                             predictor.steps.keyframe_interval)
    predictor.reset()
    reports = []
    for image in images:
        padded, size = predictor.prepare(image)
        with torch.no_grad():
            expected = pipeline(torch.from_numpy(np.ascontiguousarray(padded)), torch.tensor(size))
        reports.append(compare_outputs(expected, predictor.run(padded, size)))
    return reports


def graph_time_ms(predictor, images, rounds):
    """Median milliseconds of ``predictor.run`` (the graph alone; for a video export, per frame,
    keyframes included) on letterboxed ``images``, after one untimed pass."""
    frames = [predictor.prepare(image) for image in images]
    times = []
    for round_index in range(rounds + 1):
        for frame, size in frames:
            start = time.perf_counter()
            predictor.run(frame, size)
            if round_index:
                times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        opts = list(args.opts)
        if args.evaluate:  # the model's class count is the evaluation dataset's
            opts += ["DATASETS.TRAIN", "()", "DATASETS.TEST", f"({args.evaluate!r},)"]
        cfg = load_config(args.config_file, opts, device="cpu", datasets=args.dataset)
        # before the dataset and the weights: a model without an export pipeline is refused
        find_part("export_pipelines", cfg.MODEL.META_ARCHITECTURE, "MODEL.META_ARCHITECTURE")
        if args.evaluate:
            check_evaluation_dataset(args.evaluate)
        model = load_model(cfg)
    except (ConfigError, CheckpointError, DatasetError) as e:
        sys.exit(f"export_onnx.py: error: {e}")
    height, width = args.size or default_size(cfg, model)
    try:  # the size does not fit the model, or options a video export does not take
        pipeline = export_pipeline(model, height, width)
        video = declares_graphs(pipeline)
        if video and (args.quantize or args.evaluate):
            raise ConfigError(f"{cfg.MODEL.META_ARCHITECTURE} exports a video pipeline (keyframe "
                              "and frame graphs): --quantize and --evaluate take image models")
        resize = (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
        path = export_onnx(model, args.output, height, width, cfg.INPUT.FORMAT, resize=resize)
    except (ConfigError, TypeError, ValueError) as e:
        sys.exit(f"export_onnx.py: error: {e}")
    if getattr(pipeline, "any_size", False):
        logger.info(f"graph input: any size, multiples of {pipeline.size_divisibility} (traced "
                    f"at {height}x{width}); photos resized as the Predictor resizes them "
                    f"(shorter side {resize[0]}, longer at most {resize[1]})")
    else:
        logger.info(f"graph input: {height}x{width}" + ("" if args.size else
                                                        " (the model's test size; --size)"))
    predictor_class = VideoONNXPredictor if video else ONNXPredictor
    predictor = predictor_class(path)
    for written in predictor.paths.values() if video else [path]:
        logger.info(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB), ONNX checker: "
                    "ok")
    try:
        images = sample_images(args.images, args.num_images, height, width)
    except FileNotFoundError as e:
        sys.exit(f"export_onnx.py: error: {e}")
    reports = check_parity(cfg, model, predictor, images)
    summary = {
        "parity_ok": all(r.ok() for r in reports),
        "instances": [r.num_instances for r in reports],
        "max_score_diff": max(r.max_score_diff for r in reports),
        "max_box_diff": max(r.max_box_diff for r in reports),
        "min_mask_iou": min(r.min_mask_iou for r in reports),
    }
    if not video:
        summary["unmatched_scores"] = sorted(
            (s for r in reports for s in r.unmatched_scores), reverse=True)[:5]
    what = "frames of one video (PyTorch pipeline)" if video else "images (Predictor)"
    logger.info(f"parity with PyTorch on {len(images)} {what}: {json.dumps(summary)}")
    models = {"fp32": path}
    if args.quantize:
        models["int8"] = quantize_onnx(path, path.with_suffix(".int8.onnx"), args.quantize,
                                       images)
        logger.info(f"wrote {models['int8']} ({args.quantize} INT8)")
    if args.time:
        for name, model_path in models.items():
            ms = graph_time_ms(predictor_class(model_path, args.threads), images, args.time)
            logger.info(f"{name}: graph alone {ms:.1f} ms (median, {args.threads} threads)")
    if args.evaluate:
        # outputs at each image's own size, as its annotations are
        predictors = {name: ONNXPredictor(model_path, args.threads, max_output_pixels=None)
                      for name, model_path in models.items()}
        torch.set_num_threads(args.threads)
        predictors["pytorch"] = Predictor(cfg, max_output_pixels=None)
        table = {}
        for name, predictor in predictors.items():
            start = time.perf_counter()
            results = evaluate_onnx(predictor, args.evaluate)
            seconds = (time.perf_counter() - start) / len(DatasetCatalog.get(args.evaluate))
            # AP to the evaluator's precision (Detectron2's result tables: 3 decimals)
            table[name] = {**{task: round(m["AP"], 3) for task, m in results.items()},
                           "s_per_image": round(seconds, 3)}
        logger.info(f"AP on {args.evaluate}: {json.dumps(table)}")
    return 0 if summary["parity_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
