"""The video model contract and the one frame loop that every video path runs
(``rtinst.engine.VideoPredictor``, the video evaluation, the benchmark's video path, and through
``VideoPredictor`` the demo).

A model is a *video model* when it has

* ``video_state()``: the state before a video's first frame (anything: None, a frame count, cached
  keyframe features or kernels);
* ``forward_frame(inputs, state) -> (outputs, state)``: one frame (``inputs``: the image model's
  input dict of that frame) given the state the previous frame left, returning the frame's
  outputs (``{"instances": Instances, ...}``: any other key, e.g. ``"keyframe": True``, goes to
  the tracker) and the state for the next frame.

Which frames are keyframes, and what is kept between frames, belong to the method (e.g.
MobileInst reuses a keyframe's kernels for the next T-1 frames; YolactEdge warps a keyframe's
features). An image model is a video model without state (``as_video_model``).
"""
import time

from torch.nn.parallel import DistributedDataParallel

__all__ = ["ImageModelAsVideo", "VideoLoop", "as_video_model", "is_video_model", "run_video"]


def is_video_model(model) -> bool:
    """Whether ``model`` implements the video contract itself."""
    return callable(getattr(model, "video_state", None)) and \
        callable(getattr(model, "forward_frame", None))


class ImageModelAsVideo:
    """An image model (``model([inputs]) -> [outputs]``) as a video model without state."""

    def __init__(self, model):
        self.model = model

    def video_state(self):
        return None

    def forward_frame(self, inputs, state):
        return self.model([inputs])[0], state


def as_video_model(model):
    """``model`` when it is a video model (unwrapped from ``DistributedDataParallel``), else
    ``ImageModelAsVideo(model)``."""
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    return inner if is_video_model(inner) else ImageModelAsVideo(model)


class VideoLoop:
    """One video through ``model`` and ``tracker``: ``step(inputs)`` runs the next frame.

    The model's state starts from ``video_state()`` and is carried from frame to frame; the
    frame's instances (moved to the CPU) and its other outputs go to ``tracker.update``.

    Attributes:
        frames: frames run. model_seconds, association_seconds: time in the model (with the
        move to the CPU) and in the tracker, summed over the frames.
        last_association_seconds: the tracker's time on the last frame.
    """

    def __init__(self, model, tracker):
        self.model = as_video_model(model)
        self.tracker = tracker
        self.state = self.model.video_state()
        self.frames = 0
        self.frame_size = None  # the first frame's (height, width): every frame's
        self.model_seconds = self.association_seconds = self.last_association_seconds = 0.0

    def step(self, inputs):
        """The outputs of the next frame, ``"instances"`` being the tracked ones (with
        ``pred_ids``) and ``"detections"`` the model's own. A frame of another size than the
        first is a ``ValueError`` (the tracks' masks are of the first frame's size)."""
        start = time.perf_counter()
        outputs, self.state = self.model.forward_frame(inputs, self.state)
        instances = outputs["instances"].to("cpu")
        if self.frame_size is None:
            self.frame_size = tuple(instances.image_size)
        elif tuple(instances.image_size) != self.frame_size:
            where = inputs.get("file_name", f"frame {self.frames}")
            raise ValueError(f"{where}: a frame of {instances.image_size[0]}x"
                             f"{instances.image_size[1]} in a video of {self.frame_size[0]}x"
                             f"{self.frame_size[1]} frames: the frames of one video must have "
                             "one size")
        middle = time.perf_counter()
        tracked = self.tracker.update(instances, outputs)
        self.last_association_seconds = time.perf_counter() - middle
        self.model_seconds += middle - start
        self.association_seconds += self.last_association_seconds
        self.frames += 1
        return {**outputs, "instances": tracked, "detections": instances}


def run_video(model, frames, tracker):
    """Yields the outputs (``VideoLoop.step``) of every frame of one video; ``frames``: an
    iterable of the model's input dicts, in time order."""
    loop = VideoLoop(model, tracker)
    for inputs in frames:
        yield loop.step(inputs)
