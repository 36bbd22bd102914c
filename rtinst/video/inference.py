"""Evaluation on a video dataset: every video's frames through ``run_video`` (the model's own
frame loop and state, then the tracker ``MODEL.TRACKER.NAME``), one result per track to the
evaluator (``train_net.py --eval-only`` on a dataset of ``rtinst.data.ytvis``)."""
import logging

import torch
import tqdm
from detectron2.data import DatasetCatalog
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm

from rtinst.data.dataset_mapper import build_dataset_mapper

from .loop import VideoLoop
from .results import VideoTrackResults
from .tracker import build_tracker

logger = logging.getLogger(__name__)


def frame_input(video, t):
    """The image record of frame ``t`` of ``video`` for the test mapper."""
    return {"file_name": video["file_names"][t], "height": video["height"],
            "width": video["width"], "image_id": f"{video['video_id']}/{t}"}


def inference_on_videos(cfg, model, dataset_name, evaluator):
    """Runs ``model`` over this process's share of the videos of ``dataset_name``, each frame
    mapped by the test mapper (``build_dataset_mapper(cfg, is_train=False)``), with a new
    tracker per video; feeds the tracks to ``evaluator`` and returns its results. Logs the time
    per frame of the model and of the association."""
    videos = DatasetCatalog.get(dataset_name)[comm.get_rank()::comm.get_world_size()]
    mapper = build_dataset_mapper(cfg, is_train=False)
    evaluator.reset()
    model_seconds = association_seconds = 0.0
    frames = sum(v["length"] for v in videos)
    with inference_context(model), torch.no_grad(), tqdm.tqdm(
        total=frames, desc=dataset_name, unit="frame", disable=not comm.is_main_process(),
        dynamic_ncols=True,
    ) as bar:
        for video in videos:
            loop = VideoLoop(model, build_tracker(cfg))
            results = VideoTrackResults(video["length"])
            for t in range(video["length"]):
                tracked = loop.step(mapper(frame_input(video, t)))["instances"]
                results.add(t, tracked, getattr(loop.tracker, "hypotheses", None))
                bar.update()
            model_seconds += loop.model_seconds
            association_seconds += loop.association_seconds
            evaluator.process([video], [{"tracks": results.tracks(),
                                         "region_key": results.region_key}])
    if frames:
        logger.info(
            "%s: %d videos, %d frames: model %.1f ms/frame, association %.2f ms/frame, "
            "%.1f frames/s", dataset_name, len(videos), frames, 1e3 * model_seconds / frames,
            1e3 * association_seconds / frames, frames / (model_seconds + association_seconds),
        )
    return evaluator.evaluate()
