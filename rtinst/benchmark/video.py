"""The video path of the benchmark: a model followed by the online tracker (``rtinst.video``),
timed as one call per frame; the association's own time is reported as a submodule time."""
import time

from rtinst.video import OnlineTracker

ASSOCIATION = "association"


def tracking_cfg(cfg):
    """``cfg`` with the tracker taking every detection (thresholds 0), so that the association
    works on all K detections of a frame, as the image path returns them."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.TRACKER.SCORE_THRESH = 0.0
    cfg.MODEL.TRACKER.BIRTH_SCORE_THRESH = 0.0
    return cfg


class TrackedModel:
    """``model`` then ``OnlineTracker(cfg)`` on its instances, called like the model (a list of
    one input dict). Doubles as the benchmark's submodule timer: ``elapsed_ms["association"]``
    is the association's time in the last call."""

    def __init__(self, model, cfg):
        self.model = model
        self.tracker = OnlineTracker(tracking_cfg(cfg))
        self.elapsed_ms = {ASSOCIATION: 0.0}

    def reset(self):
        self.elapsed_ms[ASSOCIATION] = 0.0

    def __call__(self, batched_inputs):
        (output,) = self.model(batched_inputs)
        start = time.perf_counter()
        tracked = self.tracker.update(output["instances"].to("cpu"))
        self.elapsed_ms[ASSOCIATION] = (time.perf_counter() - start) * 1000.0
        return [{"instances": tracked}]
