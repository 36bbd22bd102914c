"""The video half of rtinst, shared by every method: the video model contract and the one frame
loop every video path runs (``run_video``, ``VideoLoop``), online tracking of any model's
instances (``OnlineTracker``, chosen by ``MODEL.TRACKER.NAME``; its association registry
``MODEL.TRACKER.ASSOCIATION``) and evaluation over video datasets (``inference_on_videos``).
``VideoPredictor`` (a ``Predictor``'s preprocessing, the loop and the tracker) is
``rtinst.engine.VideoPredictor``. Video data is in ``rtinst.data.ytvis`` / ``synthetic_videos``,
the YouTube-VIS evaluator in ``rtinst.evaluation.ytvis_evaluation``."""
from .association import MaskIoU, mask_iou
from .inference import inference_on_videos
from .loop import ImageModelAsVideo, VideoLoop, as_video_model, is_video_model, run_video
from .results import VideoTrackResults
from .tracker import OnlineTracker, Track, build_tracker

__all__ = ["ImageModelAsVideo", "MaskIoU", "OnlineTracker", "Track", "VideoLoop",
           "VideoTrackResults", "as_video_model", "build_tracker", "inference_on_videos",
           "is_video_model", "mask_iou", "run_video"]
