#!/usr/bin/env python
"""Runs a model on images or a video and writes the visualised predictions.

Examples:
  python tools/demo.py --config-file configs/FCOS/R_50_1x.yaml --input photos/ --output out/ \\
      --opts MODEL.WEIGHTS model_final.pth
  python tools/demo.py --config-file zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml \\
      --input "imgs/*.jpg" --output out/ --device cpu --confidence-threshold 0.3
  python tools/demo.py --config-file configs/FCOS/R_50_1x.yaml --input clip.mp4 \\
      --output clip_out.mp4
"""

import argparse
import glob
import logging
import sys
from pathlib import Path

import cv2
import torch
import tqdm
from detectron2.data import Metadata, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

import rtinst  # noqa: F401  (registers rtinst's models)
from rtinst.benchmark import resolve_weights, set_score_threshold
from rtinst.benchmark.inputs import IMAGE_EXTENSIONS, list_images
from rtinst.engine import ConfigError, load_config

logger = logging.getLogger("rtinst.demo")

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


class DemoError(Exception):
    """A problem (missing or unreadable input, unusable output) reported without a traceback."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, help="config file or zoo:<Detectron2 model-zoo name>"
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="image paths, glob patterns or folders; or one video file",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="output folder, or output file for a single image or a video",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        help="sets MODEL.DEVICE (default: the config's, or cpu without CUDA)",
    )
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... (must come last)"
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if len(args.opts) % 2:
        parser.error("--opts needs KEY VALUE pairs")
    return args


def setup_cfg(args):
    cfg = load_config(args.config_file, args.opts, device=args.device)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.info(f"MODEL.DEVICE {cfg.MODEL.DEVICE}: no CUDA device, using the CPU")
        cfg.MODEL.DEVICE = "cpu"
    families = set_score_threshold(cfg, args.confidence_threshold)
    if not families:
        logger.info("no registered test-time threshold for this model: filtering scores only")
    logger.info(f"weights: {resolve_weights(cfg)}")
    return cfg


def collect_images(patterns):
    """[(path, named explicitly)] for image paths, globs and folders; folder and glob members that
    cannot be read are skipped later, an explicitly named one is an error."""
    images = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            images.append((path, True))
            continue
        if path.is_dir():
            found = list_images(path)
        elif glob.has_magic(pattern):
            found = [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file()]
        else:
            raise DemoError(f"input not found: {pattern}")
        if not found:
            raise DemoError(f"no images in {pattern}")
        images += [(p, False) for p in found]
    return images


def is_video(path):
    return path.suffix.lower() in VIDEO_EXTENSIONS


def output_file(output, source, single, extensions, suffix=None):
    """``output`` itself for a single input when it names a file of a fitting kind, else
    ``output/<source name>`` (with ``suffix``); the folder is created."""
    output = Path(output)
    if single and output.suffix.lower() in extensions:
        output.parent.mkdir(parents=True, exist_ok=True)
        return output
    output.mkdir(parents=True, exist_ok=True)
    return output / (source.with_suffix(suffix).name if suffix else source.name)


def confident_instances(predictions, threshold):
    """The predicted instances (on CPU) scoring at least ``threshold``."""
    if "instances" not in predictions:
        raise DemoError(f"the model returned no instances (outputs: {sorted(predictions)})")
    instances = predictions["instances"].to("cpu")
    return instances[instances.scores >= threshold] if instances.has("scores") else instances


def dataset_metadata(cfg):
    """Metadata (class names, colours) of cfg.DATASETS.TEST[0] if registered, else empty."""
    names = cfg.DATASETS.TEST
    if names and names[0] in MetadataCatalog.list():
        return MetadataCatalog.get(names[0])
    logger.info("no registered test dataset: classes are shown as numbers")
    return Metadata()


def run_on_images(predictor, metadata, images, output, threshold):
    written = 0
    for path, explicit in tqdm.tqdm(images, desc="images", unit="img", dynamic_ncols=True):
        try:
            image = read_image(str(path), format="BGR")
        except OSError as e:
            if explicit:
                raise DemoError(f"cannot read image {path} ({type(e).__name__})") from None
            logger.warning(f"skipping unreadable image {path} ({type(e).__name__})")
            continue
        instances = confident_instances(predictor(image), threshold)
        drawn = Visualizer(
            image[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE
        ).draw_instance_predictions(instances)
        target = output_file(output, path, len(images) == 1, IMAGE_EXTENSIONS)
        if not cv2.imwrite(str(target), drawn.get_image()[:, :, ::-1]):
            raise DemoError(f"cannot write {target}")
        written += 1
    logger.info(f"wrote {written} image(s) to {output}")


def run_on_video(predictor, metadata, video, output, threshold):
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DemoError(f"cannot open video {video}")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(
        capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    )
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    target = output_file(output, video, True, VIDEO_EXTENSIONS, suffix=".mp4")
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise DemoError(f"cannot write video {target}")
    visualizer = VideoVisualizer(metadata, ColorMode.IMAGE)
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    try:
        with tqdm.tqdm(total=frames, desc="frames", unit="frame", dynamic_ncols=True) as bar:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                instances = confident_instances(predictor(frame), threshold)
                drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], instances)
                writer.write(drawn.get_image()[:, :, ::-1])
                bar.update()
    finally:
        capture.release()
        writer.release()
    logger.info(f"wrote {target}")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rtinst").setLevel(logging.INFO)
    try:
        videos = [Path(p) for p in args.input if Path(p).is_file() and is_video(Path(p))]
        if videos and len(args.input) > 1:
            raise DemoError("a video must be the only --input")
        images = [] if videos else collect_images(args.input)
        cfg = setup_cfg(args)
        predictor = DefaultPredictor(cfg)
        metadata = dataset_metadata(cfg)
        if videos:
            run_on_video(predictor, metadata, videos[0], args.output, args.confidence_threshold)
        else:
            run_on_images(predictor, metadata, images, args.output, args.confidence_threshold)
    except (ConfigError, DemoError) as e:
        sys.exit(f"demo.py: error: {e}")


if __name__ == "__main__":
    main()
