"""Evaluation on a video dataset: every video's frames through ``run_video`` (the model's own
frame loop and state, then the tracker ``MODEL.TRACKER.NAME``), one result per track to the
evaluator (``train_net.py --eval-only`` on a dataset of ``rtinst.data.ytvis``)."""
import logging
from collections import Counter

import torch
import tqdm
from detectron2.data import DatasetCatalog
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm

from rtinst.data.dataset_mapper import build_dataset_mapper

from .loop import VideoLoop
from .results import VideoTrackResults
from .tracker import TRACKER_COUNTS, build_tracker

logger = logging.getLogger(__name__)


def frame_input(video, t):
    """The image record of frame ``t`` of ``video`` for the test mapper."""
    return {"file_name": video["file_names"][t], "height": video["height"],
            "width": video["width"], "image_id": f"{video['video_id']}/{t}"}


def tracker_thresholds(cfg):
    """The ``MODEL.TRACKER`` keys in force, as one line."""
    return ", ".join(f"{key} {value}" for key, value in sorted(cfg.MODEL.TRACKER.items()))


def describe_counts(counts):
    """What the tracker's rules removed (``OnlineTracker.counts`` summed over videos), one
    line per count."""
    return "\n".join(f"  {counts[key]:7d} {text}" for key, text in TRACKER_COUNTS.items()
                     if key in counts)


def log_tracking(cfg, name, counts, log=logger):
    """Logs the tracker's counts; a warning with the thresholds in force when no track, or
    fewer than one per video, came out (``counts["videos"]``). Nothing for a tracker that
    keeps no counts (a method's own)."""
    if "tracks" not in counts:
        return
    tracks, videos = counts.get("tracks", 0), counts.get("videos", 1)
    if tracks < videos:
        log.warning("%s: %d tracks in %d videos. The tracker's keys in force: %s. What each "
                    "rule removed:\n%s", name, tracks, videos, tracker_thresholds(cfg),
                    describe_counts(counts))
    else:
        log.info("%s: %d tracks in %d videos; what each rule removed:\n%s", name, tracks,
                 videos, describe_counts(counts))


def inference_on_videos(cfg, model, dataset_name, evaluator, frame_evaluator=None):
    """Runs ``model`` over this process's share of the videos of ``dataset_name``, each frame
    mapped by the test mapper (``build_dataset_mapper(cfg, is_train=False)``), with a new
    tracker per video; feeds the tracks to ``evaluator`` and returns its results. Logs the time
    per frame of the model and of the association (also in the results: ``"speed"``, this
    process's), and what the tracker's rules removed (``log_tracking``). With a
    ``frame_evaluator`` (an image evaluator of the ``<dataset>_frames`` records), every frame's
    detections go to it too, its tasks returned as ``"frame_<task>"``."""
    videos = DatasetCatalog.get(dataset_name)[comm.get_rank()::comm.get_world_size()]
    mapper = build_dataset_mapper(cfg, is_train=False)
    evaluator.reset()
    if frame_evaluator is not None:
        frame_evaluator.reset()
    model_seconds = association_seconds = 0.0
    counts = Counter(videos=len(videos))
    frames = sum(v["length"] for v in videos)
    with inference_context(model), torch.no_grad(), tqdm.tqdm(
        total=frames, desc=dataset_name, unit="frame", disable=not comm.is_main_process(),
        dynamic_ncols=True,
    ) as bar:
        for video in videos:
            loop = VideoLoop(model, build_tracker(cfg))
            results = VideoTrackResults(video["length"], cfg.MODEL.TRACKER.CLASS_HYPOTHESES,
                                        cfg.MODEL.TRACKER.TRACK_SCORE_LENGTH_POWER)
            for t in range(video["length"]):
                inputs = mapper(frame_input(video, t))
                outputs = loop.step(inputs)
                tracked = outputs["instances"]
                if frame_evaluator is not None:
                    frame_evaluator.process([inputs], [{"instances": outputs["detections"]}])
                results.add(t, tracked, getattr(loop.tracker, "hypotheses", None))
                for frame, instances, classes in getattr(loop.tracker, "late", ()):
                    results.add(frame, instances, [classes])
                bar.update()
            model_seconds += loop.model_seconds
            association_seconds += loop.association_seconds
            counts.update(getattr(loop.tracker, "counts", {}))
            evaluator.process([video], [{"tracks": results.tracks(),
                                         "region_key": results.region_key}])
    if frames:
        logger.info(
            "%s: %d videos, %d frames: model %.1f ms/frame, association %.2f ms/frame, "
            "%.1f frames/s", dataset_name, len(videos), frames, 1e3 * model_seconds / frames,
            1e3 * association_seconds / frames, frames / (model_seconds + association_seconds),
        )
    log_tracking(cfg, dataset_name, counts)
    results = evaluator.evaluate()
    if frame_evaluator is not None and results is not None:
        results.update({f"frame_{task}": values
                        for task, values in (frame_evaluator.evaluate() or {}).items()})
    if results and frames:
        results["speed"] = {"model_ms": 1e3 * model_seconds / frames,
                            "association_ms": 1e3 * association_seconds / frames}
    return results
