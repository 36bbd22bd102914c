#!/usr/bin/env python
"""Runs a model on images, folders, globs, videos, a camera or a stream and writes the visualised
predictions under --output; prints the detections per image (per video: per frame, on average).

Examples:
  python tools/demo.py --config-file configs/FCOS/MNV2_FPN_shapes.yaml \\
      --input img.jpg folder/ "more/*.png" video.mp4 --output out/ \\
      --opts MODEL.WEIGHTS output/fcos/MNV2_FPN_shapes/model_final.pth
  python tools/demo.py --config-file CFG --dataset mine_val=ann/val.json,img/val \\
      --input img/val/ --output out/ --opts MODEL.WEIGHTS model_final.pth
  python tools/demo.py --config-file CFG --input 0 --output cam.mp4 --max-frames 300 \\
      --opts MODEL.WEIGHTS model_final.pth          # camera 0 (camera:0 if a file "0" exists)
  python tools/demo.py --config-file CFG --input rtsp://host/stream --output out/ \\
      --opts MODEL.WEIGHTS model_final.pth          # Ctrl-C stops a live stream
  python tools/demo.py --config-file zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml \\
      --input "imgs/*.jpg" --output out/ --random-weights   # try the pipeline: meaningless boxes
  python tools/demo.py --config-file CFG --track --input video.mp4 frames_folder/ --output out/ \\
      --opts MODEL.WEIGHTS model_final.pth   # track IDs: one colour and "ID n" per track

Inputs: image files, folders (their images and videos), glob patterns, video files, a camera
index (N or camera:N; an existing file or folder of that name is read as such) and stream URLs
(rtsp://, http(s)://, ...; opened with OpenCV). --output is a folder (created) that gets each
result under its input's name (videos and streams as .mp4), or, for a single input, a file of the
input's kind (out.jpg, out.mp4).

--track runs videos, cameras and streams through the online tracker (rtinst.engine.VideoPredictor,
MODEL.TRACKER.*): each track is drawn in its own colour with its ID; a folder of images is then one
video (its frames in name order, played at --fps) written as <folder name>.mp4.

The weights (MODEL.WEIGHTS) load without running code in them and must fit the model
(rtinst.engine.Predictor); without weights the demo refuses to run unless --random-weights.
"""

import argparse
import collections
import glob
import logging
import os
import re
import sys
from pathlib import Path

DEFAULT_FRAMES_FPS = 10.0  # the moving-shapes videos' rate
ZOO_PREFIX = "zoo:"  # --config-file zoo:<Detectron2 model-zoo name>


def parse_args(argv=None):
    """The arguments, checked with the standard library alone (run before the imports below)."""
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
        help="image or video files, folders, glob patterns, camera indices (N or camera:N) and "
        "stream URLs, mixed",
    )
    parser.add_argument(
        "--output",
        required=True,
        help="output folder, or output file for a single image / video / stream input",
    )
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument(
        "--dataset",
        metavar="NAME=JSON,IMAGE_DIR",
        help="a COCO-format dataset (as train_net.py's --dataset) whose class names are drawn; it "
        "becomes DATASETS.TEST, so that the model's class count is its own",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="run with randomly initialised weights (MODEL.WEIGHTS is ignored; drawn with seed "
        "SEED, 0 if negative, so each run draws the same) to try the pipeline: the detections "
        "mean nothing",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="stop each video, camera or stream after N frames (default: its end, or Ctrl-C)",
    )
    parser.add_argument(
        "--track",
        action="store_true",
        help="give videos, cameras and streams track IDs (one colour per track); a folder of "
        "images is then one video of its frames",
    )
    parser.add_argument(
        "--keyframe-interval",
        type=int,
        metavar="N",
        help="with --track, a video model's keyframe every N frames (e.g. YolactEdge's "
        "MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL; 1: every frame)",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=DEFAULT_FRAMES_FPS,
        help=f"frame rate of a folder of frames with --track (default {DEFAULT_FRAMES_FPS:g})",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        help="sets MODEL.DEVICE (default: the config's, or cpu without CUDA)",
    )
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE ... (must come last)"
    )
    args = parser.parse_args(argv)
    if len(args.opts) % 2:
        parser.error("--opts needs KEY VALUE pairs")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    if args.keyframe_interval is not None and (args.keyframe_interval < 1 or not args.track):
        parser.error("--keyframe-interval needs --track and N >= 1")
    if not 0 < args.fps <= 240:
        parser.error("--fps must be in (0, 240]")
    if not args.config_file.startswith(ZOO_PREFIX) and not os.path.isfile(args.config_file):
        sys.exit(f"demo.py: error: config file not found: {args.config_file}")
    return args


if __name__ == "__main__":
    # --help and argument errors answer here, before the imports below load torch, Detectron2
    # and rtinst (seconds); main() parses the same arguments again
    parse_args()

# rtinst first: importing it registers rtinst's models, and checks the detectron2 build before
# any detectron2 code runs
import rtinst  # noqa: E402, F401
from rtinst.benchmark import set_keyframe_interval, set_score_threshold  # noqa: E402
from rtinst.benchmark.inputs import IMAGE_EXTENSIONS, list_images  # noqa: E402
from rtinst.data import register_from_spec  # noqa: E402
from rtinst.engine import Predictor, VideoPredictor, load_config  # noqa: E402
from rtinst.errors import DemoError, RtinstError  # noqa: E402
from rtinst.video.inference import log_tracking  # noqa: E402

import cv2  # noqa: E402
import torch  # noqa: E402
import tqdm  # noqa: E402
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.utils.colormap import colormap  # noqa: E402
from detectron2.utils.video_visualizer import VideoVisualizer  # noqa: E402
from detectron2.utils.visualizer import ColorMode, Visualizer  # noqa: E402

logger = logging.getLogger("rtinst.demo")

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
CAMERA = re.compile(r"^(?:camera:)?(\d+)$")
DEFAULT_FPS = 25.0
TRACK_COLOURS = colormap(rgb=True, maximum=1)


class UnreadableInput(DemoError):
    """An input that cannot be read at all (an image, a video that does not open or decode, a
    camera, a stream): reported, and the run goes on with the next input."""


Source = collections.namedtuple("Source", "kind location explicit")
"""``kind``: "image", "video", "frames" (a folder of images read as one video) or "stream";
``location``: a Path (image, video, frames), a camera index (int) or a URL (str) (stream); ``explicit``: named on the command line (not found in a folder or
by a glob), so that an unreadable one is an error rather than skipped."""


# ---------------------------------------------------------------------------- set-up


def setup_cfg(args):
    """The config of ``args``: --dataset registered first and made DATASETS.TEST (so that
    ``load_config`` gives every head its class count), the score threshold set, MODEL.WEIGHTS
    required unless --random-weights."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise DemoError("--device cuda: no CUDA device available")
    opts = list(args.opts)
    if args.dataset:
        name = register_from_spec(args.dataset)
        # the demo trains nothing: the drawn dataset alone sets the class count
        opts += ["DATASETS.TRAIN", "()", "DATASETS.TEST", f"({name!r},)"]
    # the config's device, or the CPU on a machine without CUDA
    device = args.device or (None if torch.cuda.is_available() else "cpu")
    cfg = load_config(args.config_file, opts, device=device)
    if args.random_weights:
        if cfg.MODEL.WEIGHTS:
            logger.warning(f"--random-weights: ignoring MODEL.WEIGHTS {cfg.MODEL.WEIGHTS}")
        cfg.MODEL.WEIGHTS = ""
        torch.manual_seed(max(cfg.SEED, 0))  # the same meaningless weights on every run
    elif not cfg.MODEL.WEIGHTS:
        raise DemoError(
            "MODEL.WEIGHTS is empty: the model would predict from random weights; give "
            "--opts MODEL.WEIGHTS path/to/model_final.pth (or --random-weights to try the "
            "pipeline with meaningless detections)"
        )
    if args.keyframe_interval is not None and not set_keyframe_interval(
            cfg, args.keyframe_interval):
        raise DemoError(f"--keyframe-interval: {cfg.MODEL.META_ARCHITECTURE} has no keyframes "
                        "(no registered keyframe interval key)")
    families = set_score_threshold(cfg, args.confidence_threshold)
    if not families:
        logger.info("no registered test-time threshold for this model: filtering scores only")
    return cfg


def dataset_metadata(cfg):
    """Metadata (class names, colours) of cfg.DATASETS.TEST[0] if registered (``load_config``
    has read its class names), else empty."""
    names = cfg.DATASETS.TEST
    if names and names[0] in DatasetCatalog.list():
        return MetadataCatalog.get(names[0])
    logger.info("no registered test dataset: classes are shown as numbers")
    return Metadata()


# ---------------------------------------------------------------------------- inputs


def _folder_sources(folder):
    videos = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
    return [Source("image", p, False) for p in list_images(folder)] + [
        Source("video", p, False) for p in videos
    ]


def _file_source(path, explicit):
    return Source("video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image", path, explicit)


def collect_sources(patterns, frames_folders=False):
    """The ``Source`` of every --input entry, in order (a folder's images, then its videos; with
    ``frames_folders``, a folder holding images is one "frames" source)."""
    sources = []
    for pattern in patterns:
        path = Path(pattern)
        camera = CAMERA.match(pattern)
        if URL.match(pattern):
            sources.append(Source("stream", pattern, True))
        elif path.exists():
            if camera:
                kind = "folder" if path.is_dir() else "file"
                logger.info(f"--input {pattern}: reading the {kind} '{pattern}' "
                            f"(camera:{camera.group(1)} opens the camera)")
            if path.is_dir() and frames_folders and list_images(path):
                sources.append(Source("frames", path, True))
            elif path.is_dir():
                found = _folder_sources(path)
                if not found:
                    raise DemoError(f"no images or videos in {pattern}")
                sources += found
            else:
                sources.append(_file_source(path, True))
        elif camera:
            sources.append(Source("stream", int(camera.group(1)), True))
        elif glob.has_magic(pattern):
            found = [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_file()]
            if not found:
                raise DemoError(f"no files match {pattern}")
            sources += [_file_source(p, False) for p in found]
        else:
            raise DemoError(f"input not found: {pattern}")
    return sources


def describe(location):
    return f"camera {location}" if isinstance(location, int) else str(location)


# ---------------------------------------------------------------------------- outputs


class Outputs:
    """Where each result goes: ``--output`` itself for a single input when it names a file of
    the input's kind, else ``--output/<input name>`` (distinct names for inputs of the same
    name)."""

    def __init__(self, output, single):
        self.output, self.single = Path(output), single
        self.taken = set()

    def target(self, source):
        kind_extensions = IMAGE_EXTENSIONS if source.kind == "image" else VIDEO_EXTENSIONS
        if self.single and self.output.suffix.lower() in kind_extensions:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            return self.output
        if self.output.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
            raise DemoError(f"--output {self.output} names a file, but the inputs give several "
                            "results (or another kind): give a folder")
        self.output.mkdir(parents=True, exist_ok=True)
        if source.kind == "image":
            name = source.location.name
            if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                name += ".png"  # cv2.imwrite picks the format by extension
        elif source.kind == "video":
            name = source.location.with_suffix(".mp4").name
        elif source.kind == "frames":
            name = f"{source.location.resolve().name}.mp4"
        elif isinstance(source.location, int):
            name = f"camera{source.location}.mp4"
        else:
            name = "stream.mp4"
        stem, suffix = Path(name).stem, Path(name).suffix
        target, n = self.output / name, 1
        while target in self.taken:
            n += 1
            target = self.output / f"{stem}-{n}{suffix}"
        self.taken.add(target)
        return target


# ---------------------------------------------------------------------------- running


def confident_instances(predictions, threshold):
    """The predicted instances (on CPU) scoring at least ``threshold``."""
    if "instances" not in predictions:
        raise DemoError(f"the model returned no instances (outputs: {sorted(predictions)})")
    instances = predictions["instances"].to("cpu")
    return instances[instances.scores >= threshold] if instances.has("scores") else instances


class Counter:
    """Detections per class name, and the line that reports them."""

    def __init__(self, metadata):
        self.classes = metadata.get("thing_classes") or []

    def name(self, index):
        return self.classes[index] if index < len(self.classes) else f"class {index}"

    def count(self, instances):
        """``collections.Counter`` of class names; a DemoError for classes the metadata lacks
        (the drawing would fail on them)."""
        labels = instances.pred_classes.tolist() if instances.has("pred_classes") else []
        if self.classes and labels and max(labels) >= len(self.classes):
            raise DemoError(
                f"the model predicts class {max(labels)}, but the dataset's metadata has "
                f"{len(self.classes)} classes: the config's class count is not the dataset's"
            )
        return collections.Counter(self.name(i) for i in labels)

    @staticmethod
    def line(counts, frames=None):
        """``3 detections (person 2, dog 1)``; with ``frames``, means per frame."""
        total = sum(counts.values()) / (frames or 1)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if frames is None:
            per_class = ", ".join(f"{name} {n}" for name, n in ordered)
            text = f"{int(total)} detection{'' if total == 1 else 's'}"
        else:
            per_class = ", ".join(f"{name} {n / frames:.2f}" for name, n in ordered)
            text = f"{frames} frame{'' if frames == 1 else 's'}, {total:.2f} detections per frame"
        return f"{text} ({per_class})" if per_class else text


def in_frame_of(image, instances):
    """``image`` at the size of ``instances``' frame: the predictor gives a huge image's outputs
    at a bounded size (its warning says so), and they are drawn at that size."""
    height, width = instances.image_size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def predict(predictor, image, where):
    try:
        return predictor(image)
    except ValueError as e:  # the predictor's input checks
        raise DemoError(f"{where}: {e}") from None


def run_on_image(predictor, metadata, counter, source, target, threshold):
    """Draws and writes one image; prints its count line. False when skipped (unreadable)."""
    path = source.location
    try:
        image = read_image(str(path), format="BGR")
    except OSError as e:
        if source.explicit:
            raise UnreadableInput(f"cannot read image {path} ({type(e).__name__})") from None
        logger.warning(f"skipping unreadable image {path} ({type(e).__name__})")
        return False
    instances = confident_instances(predict(predictor, image, path), threshold)
    counts = counter.count(instances)
    drawn = Visualizer(
        in_frame_of(image, instances)[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE
    ).draw_instance_predictions(instances)
    if not cv2.imwrite(str(target), drawn.get_image()[:, :, ::-1]):
        raise DemoError(f"cannot write {target}")
    tqdm.tqdm.write(f"{path}: {counter.line(counts)}")  # stdout, clear of the progress bar
    return True


def _open_capture(source):
    capture = cv2.VideoCapture(source.location if source.kind == "stream" else str(source.location))
    if not capture.isOpened():
        capture.release()
        if source.kind == "video":
            raise UnreadableInput(f"cannot open video {source.location}")
        if isinstance(source.location, int):
            raise UnreadableInput(
                f"cannot open camera {source.location} (no such camera, or it is busy)")
        raise UnreadableInput(
            f"cannot open stream {source.location}: OpenCV could not open it (check the address "
            "and that this OpenCV build reads that protocol)"
        )
    return capture


def _capture_frames(capture):
    """The frames of an opened capture, then it is released."""
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def _folder_frames(paths, skipped):
    """The images of ``paths`` that can be read; the others are skipped with a warning and
    appended to ``skipped``."""
    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            logger.warning(f"skipping unreadable frame {path}")
            skipped.append(path)
            continue
        yield frame


def open_frames(source, fps):
    """``(frames, fps, frame count or 0, skipped)`` of a video, camera, stream or frames folder;
    ``skipped`` gets the frame files that cannot be read as the frames are read."""
    skipped = []
    if source.kind == "frames":
        paths = list_images(source.location)
        return _folder_frames(paths, skipped), fps, len(paths), skipped
    capture = _open_capture(source)
    rate = capture.get(cv2.CAP_PROP_FPS)
    rate = rate if 0 < rate <= 240 else DEFAULT_FPS  # streams often report 0 or a clock rate
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if source.kind == "video" else 0
    return _capture_frames(capture), rate, max(count, 0), skipped


def draw_tracks(frame, instances, metadata):
    """``frame`` (BGR) with each instance drawn in its track's colour, labelled "ID n class
    score"."""
    ids = instances.pred_ids.tolist()
    classes = metadata.get("thing_classes") or []
    labels = [
        f"ID {i} " + (classes[c] if c < len(classes) else f"class {c}") + f" {score:.2f}"
        for i, c, score in zip(ids, instances.pred_classes.tolist(), instances.scores.tolist())
    ]
    visualizer = Visualizer(frame[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
    drawn = visualizer.overlay_instances(
        masks=instances.pred_masks.numpy() if instances.has("pred_masks") else None,
        boxes=instances.pred_boxes.tensor.numpy(),
        labels=labels,
        assigned_colors=[tuple(TRACK_COLOURS[i % len(TRACK_COLOURS)]) for i in ids],
        alpha=0.5,
    )
    return drawn.get_image()[:, :, ::-1]


def run_on_video(predictor, metadata, counter, source, target, threshold, max_frames=None,
                 track=False, frames_fps=DEFAULT_FRAMES_FPS):
    """Draws every frame of a video, camera, stream or frames folder into ``target`` (mp4);
    prints the per-frame mean count line (and the number of tracks with ``track``). A live
    stream stops at --max-frames or Ctrl-C; an ``UnreadableInput`` when no frame can be read."""
    frames, fps, count, skipped = open_frames(source, frames_fps)
    total = min(count, max_frames or count) if count > 0 else max_frames
    visualizer = VideoVisualizer(metadata, ColorMode.IMAGE)
    tracker = VideoPredictor(predictor.cfg, predictor) if track else None
    counts, track_ids, done, writer = collections.Counter(), set(), 0, None
    try:
        with tqdm.tqdm(total=total, desc=describe(source.location), unit="frame",
                       dynamic_ncols=True) as bar:
            for frame in frames:
                if max_frames is not None and done >= max_frames:
                    break
                where = f"{describe(source.location)} frame {done}"
                outputs = predict(tracker or predictor, frame, where)
                instances = confident_instances(outputs, threshold)
                counts += counter.count(instances)
                frame = in_frame_of(frame, instances)
                if tracker is not None:
                    track_ids.update(instances.pred_ids.tolist())
                    drawn = draw_tracks(frame, instances, metadata)
                else:
                    drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], instances)
                    drawn = drawn.get_image()[:, :, ::-1]
                if writer is None:  # the first frame gives the size (streams may not say)
                    size = (drawn.shape[1], drawn.shape[0])
                    writer = cv2.VideoWriter(
                        str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size
                    )
                    if not writer.isOpened():
                        raise DemoError(f"cannot write video {target}")
                if (drawn.shape[1], drawn.shape[0]) != size:  # a stream that changed its size
                    drawn = cv2.resize(drawn, size)
                writer.write(drawn)
                done += 1
                bar.update()
    except KeyboardInterrupt:
        if source.kind in ("video", "frames"):
            raise
        logger.info(f"{describe(source.location)}: stopped (Ctrl-C)")
    finally:
        frames.close()
        if writer is not None:
            writer.release()
    if not done:
        raise UnreadableInput(f"no frames could be read from {describe(source.location)}")
    line = counter.line(counts, frames=done)
    if tracker is not None:
        line += f"; {len(track_ids)} track{'' if len(track_ids) == 1 else 's'}"
        if not track_ids:
            explain_no_tracks(tracker, threshold, describe(source.location))
    if skipped:
        line += f"; {len(skipped)} unreadable frame{'' if len(skipped) == 1 else 's'} skipped"
    tqdm.tqdm.write(f"{describe(source.location)}: {line}")
    logger.info(f"wrote {target}")


def explain_no_tracks(video_predictor, threshold, name):
    """Says why a video got no track drawn: the tracker's tracks all scoring below
    --confidence-threshold, or what each of the tracker's rules removed and its keys."""
    counts = collections.Counter(getattr(video_predictor.tracker, "counts", {}), videos=1)
    if counts["tracks"]:
        logger.warning(f"{name}: the tracker made {counts['tracks']} tracks, but no detection "
                       f"of theirs scored --confidence-threshold {threshold}")
    else:
        log_tracking(video_predictor.cfg, name, counts, logger)


def report_unreadable(source, error, failed):
    """An input named on the command line: its error printed and its name added to ``failed``
    (the run fails at its end); one found in a folder or by a glob: skipped with a warning."""
    if source.explicit:
        tqdm.tqdm.write(f"demo.py: error: {error}", file=sys.stderr)
        failed.append(describe(source.location))
    else:
        logger.warning(f"{error}: skipped")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rtinst").setLevel(logging.INFO)
    try:
        sources = collect_sources(args.input, frames_folders=args.track)
        cfg = setup_cfg(args)
        predictor = Predictor(cfg)
        logger.info(f"weights: {predictor.weights}")
        metadata = dataset_metadata(cfg)
        counter = Counter(metadata)
        outputs = Outputs(args.output, single=len(sources) == 1)
        written, failed = 0, []
        images = [s for s in sources if s.kind == "image"]
        for source in tqdm.tqdm(images, desc="images", unit="img", dynamic_ncols=True,
                                disable=len(images) < 2):
            target = outputs.target(source)
            try:
                done = run_on_image(predictor, metadata, counter, source, target,
                                    args.confidence_threshold)
            except UnreadableInput as e:
                report_unreadable(source, e, failed)
                done = False
            if done:
                written += 1
            else:
                outputs.taken.discard(target)
        if images:
            logger.info(f"wrote {written} image(s) to {args.output}")
        for source in sources:
            if source.kind != "image":
                try:
                    run_on_video(predictor, metadata, counter, source, outputs.target(source),
                                 args.confidence_threshold, args.max_frames, args.track,
                                 args.fps)
                except UnreadableInput as e:
                    report_unreadable(source, e, failed)
    except RtinstError as e:
        sys.exit(f"demo.py: error: {e}")
    if failed:
        sys.exit(f"demo.py: error: {len(failed)} of {len(sources)} inputs could not be read: "
                 f"{', '.join(failed)}")


if __name__ == "__main__":
    main()
