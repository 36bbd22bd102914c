"""Per-frame tracked instances collected into YouTube-VIS results: per track, one result for
each of its best class hypotheses (a track's object may be detected as several classes, as
video methods output each query with its top classes), scored by the class's mean score over the
track's frames, with the track's mask in every frame (run-length encoded, None where the track
has no detection)."""
from collections import defaultdict

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import Instances

MAX_HYPOTHESES = 3


class VideoTrackResults:
    """Collects one video's tracked frames (``Instances`` with ``pred_ids``, ``pred_masks``,
    ``scores``, ``pred_classes``, at the video's size) and their class hypotheses."""

    def __init__(self, length, max_hypotheses=MAX_HYPOTHESES):
        self.length = length
        self.max_hypotheses = max_hypotheses
        self._segmentations = defaultdict(lambda: [None] * length)
        self._frames = defaultdict(int)
        self._class_scores = defaultdict(lambda: defaultdict(float))

    def add(self, frame_index, instances: Instances, hypotheses=None):
        """``hypotheses``: per instance ``{class: score}`` (``OnlineTracker.hypotheses``);
        by default its own class and score."""
        if not len(instances):
            return
        if hypotheses is None:
            hypotheses = [{c: s} for c, s in zip(instances.pred_classes.tolist(),
                                                  instances.scores.tolist())]
        masks = instances.pred_masks.numpy().astype(np.uint8)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
        for track_id, rle, classes in zip(instances.pred_ids.tolist(), rles, hypotheses):
            self._segmentations[track_id][frame_index] = rle
            self._frames[track_id] += 1
            for label, score in classes.items():
                self._class_scores[track_id][label] += score

    def tracks(self):
        """Per track and class hypothesis (the ``max_hypotheses`` best): ``{"category_id"
        (contiguous), "score" (the class's summed score over the frames the track is in, divided
        by their number), "segmentations"}``, by track ID."""
        results = []
        for track_id in sorted(self._frames):
            ranked = sorted(self._class_scores[track_id].items(), key=lambda kv: -kv[1])
            for label, total in ranked[: self.max_hypotheses]:
                results.append({"category_id": label, "score": total / self._frames[track_id],
                                "segmentations": self._segmentations[track_id]})
        return results
