"""Per-frame tracked instances collected into YouTube-VIS results: per track, one result for
each of its best class hypotheses (a track's object may be detected as several classes, as
video methods output each query with its top classes), scored by the class's mean score over the
track's frames, with the track's mask in every frame (run-length encoded, None where the track
has no detection). A model without masks (e.g. FCOS) gives box tracks: the track's box in every
frame (XYWH, None where the track has no detection) instead of its masks."""
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode, Instances

MAX_HYPOTHESES = 3


class VideoTrackResults:
    """Collects one video's tracked frames (``Instances`` with ``pred_ids``, ``pred_masks`` or,
    for box tracks, ``pred_boxes``, ``scores``, ``pred_classes``, at the video's size) and their
    class hypotheses. The first frame with instances decides between mask and box tracks."""

    def __init__(self, length, max_hypotheses=MAX_HYPOTHESES):
        self.length = length
        self.max_hypotheses = max_hypotheses
        self._per_frame = defaultdict(lambda: [None] * length)  # RLEs or XYWH boxes
        self.has_masks = None  # decided by the first instances added
        self._empty_frames_have_masks = None  # what decides while every frame is empty
        self._frames = defaultdict(int)
        self._class_scores = defaultdict(lambda: defaultdict(float))

    def add(self, frame_index, instances: Instances, hypotheses=None):
        """``hypotheses``: per instance ``{class: score}`` (``OnlineTracker.hypotheses``);
        by default its own class and score."""
        if not len(instances):  # a mask model's empty frames have pred_masks too, as a rule
            if self._empty_frames_have_masks is None:
                self._empty_frames_have_masks = instances.has("pred_masks")
            return
        if self.has_masks is None:
            self.has_masks = instances.has("pred_masks")
        if hypotheses is None:
            hypotheses = [{c: s} for c, s in zip(instances.pred_classes.tolist(),
                                                  instances.scores.tolist())]
        if self.has_masks:
            masks = instances.pred_masks.numpy().astype(np.uint8)
            regions = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        else:
            regions = BoxMode.convert(instances.pred_boxes.tensor, BoxMode.XYXY_ABS,
                                      BoxMode.XYWH_ABS).tolist()
        for track_id, region, classes in zip(instances.pred_ids.tolist(), regions, hypotheses):
            self._per_frame[track_id][frame_index] = region
            self._frames[track_id] += 1
            for label, score in classes.items():
                self._class_scores[track_id][label] += score

    @property
    def region_key(self):
        """"bboxes" for box tracks, else "segmentations"."""
        has_masks = self._empty_frames_have_masks if self.has_masks is None else self.has_masks
        return "bboxes" if has_masks is False else "segmentations"

    def tracks(self):
        """Per track and class hypothesis (the ``max_hypotheses`` best): ``{"category_id"
        (contiguous), "score" (the class's summed score over the frames the track is in, divided
        by their number), "segmentations"}`` (``"bboxes"`` for box tracks), by track ID."""
        key = self.region_key
        results = []
        for track_id in sorted(self._frames):
            ranked = sorted(self._class_scores[track_id].items(), key=lambda kv: -kv[1])
            for label, total in ranked[: self.max_hypotheses]:
                results.append({"category_id": label, "score": total / self._frames[track_id],
                                key: self._per_frame[track_id]})
        return results
