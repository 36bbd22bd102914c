"""The video path of the benchmark: a model run by the video loop (``rtinst.video.loop``: a video
model's own frame loop and state, an image model frame by frame) followed by the tracker
(``MODEL.TRACKER.NAME``), timed as one call per frame; the association's own time is reported
as a submodule time."""
from rtinst.video import VideoLoop, build_tracker

ASSOCIATION = "association"


def tracking_cfg(cfg):
    """``cfg`` with the tracker taking every detection (thresholds 0, one tier, tracks
    confirmed at birth), so that the association works on all K detections of a frame, as the
    image path returns them; it returns them less the duplicates it merges
    (``MODEL.TRACKER.DUPLICATE_IOU``, whose cost is part of the association's)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.TRACKER.SCORE_THRESH = 0.0
    cfg.MODEL.TRACKER.HIGH_SCORE_THRESH = 0.0
    cfg.MODEL.TRACKER.BIRTH_SCORE_THRESH = 0.0
    cfg.MODEL.TRACKER.CONFIRM_FRAMES = 1
    return cfg


class TrackedModel:
    """``model`` through one ``VideoLoop`` with the tracker of ``cfg``, called like an image model
    (a list of one input dict: the next frame). Doubles as the benchmark's submodule timer:
    ``elapsed_ms["association"]`` is the association's time in the last call."""

    def __init__(self, model, cfg):
        self.loop = VideoLoop(model, build_tracker(tracking_cfg(cfg)))
        self.elapsed_ms = {ASSOCIATION: 0.0}

    def reset(self):
        self.elapsed_ms[ASSOCIATION] = 0.0

    def __call__(self, batched_inputs):
        (inputs,) = batched_inputs
        outputs = self.loop.step(inputs)
        self.elapsed_ms[ASSOCIATION] = self.loop.last_association_seconds * 1000.0
        return [outputs]
