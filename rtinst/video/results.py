"""Per-frame tracked instances collected into YouTube-VIS results, decided per track over the
whole video as query-based VIS methods do (MinVIS, Huang et al., NeurIPS 2022, Sec. 3.3): a
track's class is the one of highest score summed over its frames (its detections' classes and
those of their duplicates, ``OnlineTracker.hypotheses``), its score the mean of its detections'
scores over the frames it was detected in (times the fraction of the video's frames it covers
to the power ``length_power``: 0 the mean alone, MinVIS's; 1 the scores summed over the video,
a short track or fragment ranked below a whole one), its mask in every frame (run-length
encoded, None where the track has no detection). Up to ``max_hypotheses`` classes per track are
output (the others each scored by its mean score over the track's frames). A model without
masks (e.g. FCOS) gives box tracks: the track's box in every frame (XYWH, None where the track
has no detection)."""
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode, Instances


class VideoTrackResults:
    """Collects one video's tracked frames (``Instances`` with ``pred_ids``, ``pred_masks`` or,
    for box tracks, ``pred_boxes``, ``scores``, ``pred_classes``, at the video's size) and their
    class hypotheses. The first frame with instances decides between mask and box tracks."""

    def __init__(self, length, max_hypotheses=1, length_power=0.5):
        self.length = length
        self.max_hypotheses = max_hypotheses
        self.length_power = length_power
        self._per_frame = defaultdict(lambda: [None] * length)  # RLEs or XYWH boxes
        self.has_masks = None  # decided by the first instances added
        self._empty_frames_have_masks = None  # what decides while every frame is empty
        self._frames = defaultdict(int)
        self._scores = defaultdict(float)  # summed over the track's frames
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
        for track_id, region, score, classes in zip(instances.pred_ids.tolist(), regions,
                                                    instances.scores.tolist(), hypotheses):
            self._per_frame[track_id][frame_index] = region
            self._frames[track_id] += 1
            self._scores[track_id] += score
            for label, score in classes.items():
                self._class_scores[track_id][label] += score

    @property
    def region_key(self):
        """"bboxes" for box tracks, else "segmentations"."""
        has_masks = self._empty_frames_have_masks if self.has_masks is None else self.has_masks
        return "bboxes" if has_masks is False else "segmentations"

    def tracks(self):
        """Per track and class (its ``max_hypotheses`` best): ``{"category_id" (contiguous),
        "score", "segmentations"}`` (``"bboxes"`` for box tracks) and ``"hypothesis"``: 0 for
        the track's class (scored by its detections' mean score), 1, 2, ... for the next ones
        (scored by the class's summed score over the track's frames divided by their number),
        each score times the track's share of the video's frames to ``length_power``; by track
        ID."""
        key = self.region_key
        results = []
        for track_id in sorted(self._frames):
            frames = self._frames[track_id]
            ranked = sorted(self._class_scores[track_id].items(), key=lambda kv: -kv[1])
            for rank, (label, total) in enumerate(ranked[: self.max_hypotheses]):
                score = (self._scores[track_id] if rank == 0 else total) / frames
                score *= (frames / self.length) ** self.length_power
                results.append({"category_id": label, "score": score, "hypothesis": rank,
                                key: self._per_frame[track_id]})
        return results
