"""Evaluation on a video dataset: every video's frames through the model and the online
tracker, one result per track to the evaluator (``train_net.py --eval-only`` on a dataset of
``rtinst.data.ytvis``)."""
import logging
import time

import torch
import tqdm
from detectron2.data import DatasetCatalog
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm

from rtinst.data.dataset_mapper import build_dataset_mapper

from .results import VideoTrackResults
from .tracker import OnlineTracker

logger = logging.getLogger(__name__)


def frame_input(video, t):
    """The image record of frame ``t`` of ``video`` for the test mapper."""
    return {"file_name": video["file_names"][t], "height": video["height"],
            "width": video["width"], "image_id": f"{video['video_id']}/{t}"}


def inference_on_videos(cfg, model, dataset_name, evaluator):
    """Runs ``model`` over this process's share of the videos of ``dataset_name`` with a new
    ``OnlineTracker`` per video, feeds the tracks to ``evaluator`` and returns its results.
    Logs the time per frame of the model and of the association."""
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
            tracker = OnlineTracker(cfg)
            results = VideoTrackResults(video["length"])
            for t in range(video["length"]):
                inputs = mapper(frame_input(video, t))
                start = time.perf_counter()
                instances = model([inputs])[0]["instances"].to("cpu")
                middle = time.perf_counter()
                tracked = tracker.update(instances)
                model_seconds += middle - start
                association_seconds += time.perf_counter() - middle
                results.add(t, tracked, tracker.hypotheses)
                bar.update()
            evaluator.process([video], [{"tracks": results.tracks()}])
    if frames:
        logger.info(
            "%s: %d videos, %d frames: model %.1f ms/frame, association %.2f ms/frame, "
            "%.1f frames/s", dataset_name, len(videos), frames, 1e3 * model_seconds / frames,
            1e3 * association_seconds / frames, frames / (model_seconds + association_seconds),
        )
    return evaluator.evaluate()
