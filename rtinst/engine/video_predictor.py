"""``VideoPredictor``: any rtinst model run over a video's frames by the video loop
(``rtinst.video.loop``: a video model's own state and keyframes, an image model frame by frame),
its instances given track IDs. It lives beside ``Predictor``, not in ``rtinst.video``: the video
package (tracking, video evaluation) is used by the trainer, and must not import
``rtinst.engine`` back."""
import torch

from rtinst.video.loop import VideoLoop
from rtinst.video.tracker import build_tracker

from .predictor import Predictor


def _of_loop(name):
    """A read-only attribute that is the current ``VideoLoop``'s ``name``."""
    return property(lambda self: getattr(self.loop, name))


class VideoPredictor:
    """``VideoPredictor(cfg)(frame)`` -> the model's outputs for the next BGR frame of a video,
    ``"instances"`` with ``pred_ids``: ``Predictor``'s preprocessing (safe weights, checked
    input, bounded output size), then ``VideoLoop`` (the model's ``forward_frame`` with the
    state of the previous frames, or the image model) and the tracker ``MODEL.TRACKER.NAME``.
    ``reset()`` before another video; ``run(frames)`` does it and yields the outputs of every
    frame.

    Attributes:
        predictor: the image ``Predictor`` (its model and preprocessing). loop: the current
        video's ``VideoLoop`` (``loop.tracker``, ``loop.state``).
        model_seconds, association_seconds, frames: since the last reset.
    """

    def __init__(self, cfg, predictor=None):
        self.cfg = cfg.clone()
        self.predictor = predictor or Predictor(cfg)
        self.reset()

    def reset(self):
        self.loop = VideoLoop(self.predictor.model, build_tracker(self.cfg))

    tracker = _of_loop("tracker")
    frames = _of_loop("frames")
    model_seconds = _of_loop("model_seconds")
    association_seconds = _of_loop("association_seconds")

    def __call__(self, frame):
        inputs = self.predictor.model_inputs(frame)
        with torch.no_grad():
            return self.loop.step(inputs)

    def run(self, frames):
        """The outputs of every frame of one video (an iterable of BGR frames)."""
        self.reset()
        for frame in frames:
            yield self(frame)
