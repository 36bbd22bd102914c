"""The video half of rtinst, shared by every method: online tracking of any image model's
instances (``OnlineTracker``, its association registry ``MODEL.TRACKER.ASSOCIATION``) and
evaluation over video datasets (``inference_on_videos``). ``VideoPredictor`` (a ``Predictor``
followed by the tracker) is ``rtinst.engine.VideoPredictor``. Video data is in
``rtinst.data.ytvis`` / ``synthetic_videos``, the YouTube-VIS evaluator in
``rtinst.evaluation.ytvis_evaluation``."""
from .association import MaskIoUHungarian, mask_iou
from .inference import inference_on_videos
from .results import VideoTrackResults
from .tracker import OnlineTracker, Track

__all__ = ["MaskIoUHungarian", "OnlineTracker", "Track", "VideoTrackResults",
           "inference_on_videos", "mask_iou"]
