"""``VideoPredictor``: any rtinst model run frame by frame, its instances given track IDs. It
lives beside ``Predictor``, not in ``rtinst.video``: the video package (tracking, video
evaluation) is used by the trainer, and must not import ``rtinst.engine`` back."""
import time

from rtinst.video.tracker import OnlineTracker

from .predictor import Predictor


class VideoPredictor:
    """``VideoPredictor(cfg)(frame)`` -> ``{"instances": Instances}`` with ``pred_ids`` for the
    next BGR frame of a video: ``Predictor`` (safe weights, checked input, bounded output size)
    followed by ``OnlineTracker`` (``MODEL.TRACKER.*``). ``reset()`` before another video;
    ``run(frames)`` does it and yields the outputs of every frame.

    Attributes:
        predictor: the image ``Predictor``. tracker: the current video's ``OnlineTracker``.
        model_seconds, association_seconds: time spent in each since the last reset.
    """

    def __init__(self, cfg, predictor=None):
        self.cfg = cfg.clone()
        self.predictor = predictor or Predictor(cfg)
        self.reset()

    def reset(self):
        self.tracker = OnlineTracker(self.cfg)
        self.model_seconds = self.association_seconds = 0.0
        self.frames = 0

    def __call__(self, frame):
        start = time.perf_counter()
        instances = self.predictor(frame)["instances"].to("cpu")
        middle = time.perf_counter()
        tracked = self.tracker.update(instances)
        self.model_seconds += middle - start
        self.association_seconds += time.perf_counter() - middle
        self.frames += 1
        return {"instances": tracked}

    def run(self, frames):
        """The outputs of every frame of one video (an iterable of BGR frames)."""
        self.reset()
        for frame in frames:
            yield self(frame)
