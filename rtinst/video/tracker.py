"""Online tracking of any image model's per-frame instances: ``OnlineTracker.update`` gives each
detection the ID of the track it continues, in tiers by score as ByteTrack (Zhang et al., ECCV
2022, Alg. 1). Per frame:

1. detections scoring below ``score_thresh`` are dropped, as are duplicates (a detection
   overlapping a higher-scoring one by ``duplicate_iou`` or more: the same object as another
   class, which per-class NMS keeps, or a part of it), whose classes and scores become class
   hypotheses of the one kept (``hypotheses``);
2. the detections scoring at least ``high_score_thresh`` are matched to every track by the
   association (``MODEL.TRACKER.ASSOCIATION``: mask IoU with the track's region predicted by its
   motion, then box distance for tracks lost a while);
3. the others (the low tier) are matched to the confirmed tracks left that were seen in the last
   frame, on IoU of at least ``low_min_iou``: an object whose score dips for a few frames keeps
   its track; a low detection matching nothing is dropped;
4. an unmatched detection of the high tier scoring at least ``birth_score_thresh`` opens a
   tentative track, confirmed when matched in each of the next ``confirm_frames`` - 1 frames and
   dropped at its first miss (a one-frame false detection never becomes a track); tracks opened
   in a video's first frame are confirmed at once. Only confirmed tracks are output, with IDs
   1, 2, ... in order of confirmation; a track's tentative frames come out when it is confirmed,
   as ``late`` (for the video results, which are written when the video ends);
5. a confirmed track unmatched for more than ``max_lost_frames`` frames in a row ends; until
   then it is *lost* and may be found again by step 2;
6. duplicate tracks merge: a track matched in this frame whose region overlaps a lost track's
   predicted region by more than ``merge_iou`` is the same object; the older (the smaller ID)
   keeps it.

``counts`` says what each rule removed (``TRACKER_COUNTS``), for the logs of an empty or tiny
result. ``MODEL.TRACKER.NAME`` chooses the whole tracker (``build_tracker``): ``OnlineTracker``
by default; a method whose identities come from the model itself registers its own
(``rtinst.register_method(trackers=...)``), with the same ``update``.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import Instances

from rtinst.methods import find_part

from .association import association_masks, association_stride, matching_by_name, overlaps
from .motion import MOTIONS, moved, new_velocity

__all__ = ["OnlineTracker", "TRACKER_COUNTS", "Track", "build_tracker"]

TRACKED_FIELDS = ("pred_boxes", "scores", "pred_classes")  # of the detections, in every track
# what OnlineTracker.counts counts, in the order of its rules
TRACKER_COUNTS = {
    "detections": "detections given to the tracker",
    "below_score": "below MODEL.TRACKER.SCORE_THRESH",
    "duplicates": "duplicates of a higher-scoring detection (MODEL.TRACKER.DUPLICATE_IOU)",
    "low_unmatched": "below MODEL.TRACKER.HIGH_SCORE_THRESH and continuing no track",
    "below_birth": "matching no track and below MODEL.TRACKER.BIRTH_SCORE_THRESH",
    "unconfirmed": "tentative tracks never confirmed (MODEL.TRACKER.CONFIRM_FRAMES)",
    "merged": "tracks merged into an older one (MODEL.TRACKER.MERGE_IOU)",
    "tracks": "tracks confirmed (given an ID)",
    "tracked": "detections output",
}


@dataclass
class Track:
    """A track: its ID (0 while tentative), its last detection (a one-instance ``Instances``
    with the fields ``OnlineTracker._light`` keeps, and ``association_masks``), its
    region predicted for the next frame, the frames since it was last matched, the frames it
    was matched in, its velocity (pixels per frame of its box centre; None until seen twice)
    and, while tentative, its detections so far."""

    id: int
    last: Instances
    predicted: Instances
    missed: int = 0
    hits: int = 1
    velocity: Optional[torch.Tensor] = None
    pending: list = field(default_factory=list)  # while tentative: (frame, detection, classes)

    @property
    def confirmed(self):
        return self.id > 0


class OnlineTracker:
    """Assigns ``pred_ids`` frame by frame; one per video (``build_tracker``)."""

    @configurable
    def __init__(self, *, association, score_thresh=0.25, high_score_thresh=0.4,
                 low_min_iou=0.5, birth_score_thresh=0.4, confirm_frames=2, max_lost_frames=8,
                 duplicate_iou=0.2, merge_iou=0.85, motion="velocity", matching="greedy"):
        if motion not in MOTIONS:
            raise ValueError(f"MODEL.TRACKER.MOTION: '{motion}' is not one of {list(MOTIONS)}")
        self.association = association
        self.score_thresh = score_thresh
        self.high_score_thresh = high_score_thresh
        self.low_min_iou = low_min_iou
        self.birth_score_thresh = birth_score_thresh
        self.confirm_frames = confirm_frames
        self.max_lost_frames = max_lost_frames
        self.duplicate_iou = duplicate_iou
        self.merge_iou = merge_iou
        self.motion = motion
        self.matching = matching_by_name(matching)
        self.tracks = []
        self.next_id = 1
        self.frame = -1
        self.stride = 1
        self.counts = Counter({key: 0 for key in TRACKER_COUNTS})
        self.hypotheses = []  # of the last update's instances: {class: score}, with duplicates'
        # of the last update: (frame, one-instance Instances with pred_ids, {class: score}) of
        # the tentative frames of the tracks it confirmed
        self.late = []

    @classmethod
    def from_config(cls, cfg):
        build = find_part("track_associations", cfg.MODEL.TRACKER.ASSOCIATION,
                          "MODEL.TRACKER.ASSOCIATION")
        tracker = cfg.MODEL.TRACKER
        return {"association": build(cfg), "score_thresh": tracker.SCORE_THRESH,
                "high_score_thresh": tracker.HIGH_SCORE_THRESH,
                "low_min_iou": tracker.LOW_MIN_IOU,
                "birth_score_thresh": tracker.BIRTH_SCORE_THRESH,
                "confirm_frames": tracker.CONFIRM_FRAMES,
                "max_lost_frames": tracker.MAX_LOST_FRAMES,
                "duplicate_iou": tracker.DUPLICATE_IOU, "merge_iou": tracker.MERGE_IOU,
                "motion": tracker.MOTION.lower(), "matching": tracker.MATCHING.lower()}

    def _without_duplicates(self, instances):
        """The indices of the ``instances`` that overlap no higher-scoring one by
        ``duplicate_iou`` (else the same object, as another class or a part of it), and per
        instance kept its class hypotheses ``{class: best score}``: its own and its
        duplicates'."""
        labels = (instances.pred_classes.tolist() if instances.has("pred_classes")
                  else [0] * len(instances))
        scores = instances.scores.tolist() if instances.has("scores") else [1.0] * len(instances)
        if len(instances) < 2 or not instances.has("scores") or self.duplicate_iou >= 1:
            return torch.arange(len(instances)), [{c: s} for c, s in zip(labels, scores)]
        order = torch.argsort(instances.scores, descending=True, stable=True)
        ordered = instances[order]
        duplicate = np.triu(overlaps(ordered, ordered).numpy() >= self.duplicate_iou, 1)
        owner = np.full(len(order), -1)
        for i in range(len(order)):  # NMS: each is a duplicate of the best kept it overlaps
            if owner[i] < 0:
                owner[i] = i
                owner[duplicate[i] & (owner < 0)] = i
        order = order.tolist()
        hypotheses = {}
        for i, kept in enumerate(owner.tolist()):
            classes = hypotheses.setdefault(order[kept], {})
            label, score = labels[order[i]], scores[order[i]]
            classes[label] = max(classes.get(label, 0.0), score)
        indices = sorted(hypotheses)
        self.counts["duplicates"] += len(instances) - len(indices)
        return torch.tensor(indices, dtype=torch.int64), [hypotheses[i] for i in indices]

    def _low_tier(self, instances, low, matched_tracks):
        """``(detection, track)`` pairs of the low-score detections ``low`` (indices) with the
        confirmed tracks seen in the last frame and not in ``matched_tracks``."""
        candidates = [k for k, track in enumerate(self.tracks)
                      if track.confirmed and track.missed == 0 and k not in matched_tracks]
        if not len(low) or not candidates:
            return []
        predicted = Instances.cat([self.tracks[k].predicted for k in candidates])
        iou = overlaps(instances[low], predicted).numpy()
        return [(low[d], candidates[c])
                for d, c in self.matching(1.0 - iou, iou >= self.low_min_iou)]

    def _predict(self, track):
        """The track's region for the next frame."""
        if self.motion == "none" or track.velocity is None:
            track.predicted = track.last
        else:
            track.predicted = moved(track.last, track.velocity * (track.missed + 1), self.stride)

    def _continue(self, track, detection, frame_record):
        """``track`` matched by ``detection``; ``frame_record()``: what it keeps of the frame
        while tentative."""
        if self.motion != "none":
            track.velocity = new_velocity(track.velocity, track.last.pred_boxes.tensor[0],
                                          detection.pred_boxes.tensor[0], track.missed + 1)
        track.last, track.missed = detection, 0
        track.hits += 1
        if not track.confirmed:
            if track.hits >= self.confirm_frames:
                self._confirm(track)
            else:
                track.pending.append(frame_record())

    def _confirm(self, track):
        track.id, self.next_id = self.next_id, self.next_id + 1
        self.counts["tracks"] += 1
        for frame, detection, classes in track.pending:
            detection.pred_ids = torch.tensor([track.id])
            self.late.append((frame, detection, classes))
        track.pending = []

    def _merge_duplicate_tracks(self, matched):
        """Drops a lost track overlapping a track ``matched`` in this frame by more than
        ``merge_iou`` when the matched one is older; when the lost one is older, it takes over
        the matched one (its ID continues)."""
        lost = [t for t in self.tracks if t.confirmed and t.missed > 0]
        live = [t for t in matched if t.confirmed]
        if not lost or not live or self.merge_iou >= 1:
            return
        iou = overlaps(Instances.cat([t.last for t in live]),
                       Instances.cat([t.predicted for t in lost])).numpy()
        dropped = set()
        for i, j in zip(*np.nonzero(iou > self.merge_iou)):
            a, b = live[i], lost[j]
            if id(a) in dropped or id(b) in dropped:
                continue
            if b.id < a.id:  # the older one continues with the newer one's state
                for _, detection, _ in self.late:  # a confirmed in this frame: its first ones
                    if detection.pred_ids.item() == a.id:
                        detection.pred_ids = torch.tensor([b.id])
                a.id, b.id = b.id, a.id
            dropped.add(id(b))
            self.counts["merged"] += 1
        self.tracks = [t for t in self.tracks if id(t) not in dropped]

    def update(self, instances: Instances, frame_outputs=None) -> Instances:
        """The frame's instances that continue a confirmed track (in their order) with
        ``pred_ids``; ``instances`` on the CPU. ``frame_outputs``: the model's other outputs
        for the frame (``rtinst.video.loop``), unused here."""
        self.frame += 1
        self.late = []
        self.counts["detections"] += len(instances)
        light, source = self._light(instances)
        keep, hypotheses = self._without_duplicates(light)
        light, source = light[keep], source[keep]
        high = (light.scores >= self.high_score_thresh if light.has("scores")
                else torch.ones(len(light), dtype=torch.bool))
        high_index, low_index = high.nonzero()[:, 0].tolist(), (~high).nonzero()[:, 0].tolist()
        pairs = [(high_index[d], k) for d, k in self.association(self.tracks, light[high_index])]
        pairs += self._low_tier(light, low_index, {k for _, k in pairs})
        self.counts["low_unmatched"] += len(low_index) - sum(d in low_index for d, _ in pairs)
        track_of = {d: self.tracks[k] for d, k in pairs}
        matched = {id(t) for t in track_of.values()}
        for track in self.tracks:
            if id(track) not in matched:
                track.missed += 1

        def frame_record(d):  # what a tentative track keeps of its detection d
            return self.frame, instances[source[d:d + 1]], hypotheses[d]

        for d, track in track_of.items():
            self._continue(track, light[d], lambda d=d: frame_record(d))
        for d in high_index:
            if d in track_of:
                continue
            if light.has("scores") and light.scores[d] < self.birth_score_thresh:
                self.counts["below_birth"] += 1
                continue
            track = Track(0, light[d], light[d])
            self.tracks.append(track)
            track_of[d] = track
            if self.frame == 0 or self.confirm_frames <= 1:
                self._confirm(track)
            else:
                track.pending.append(frame_record(d))
        self.counts["unconfirmed"] += sum(not t.confirmed and t.missed > 0 for t in self.tracks)
        self.tracks = [t for t in self.tracks if (t.confirmed or t.missed == 0)
                       and t.missed <= self.max_lost_frames]
        self._merge_duplicate_tracks(list(track_of.values()))
        for track in self.tracks:
            self._predict(track)
        out = sorted(d for d, track in track_of.items() if track.confirmed)
        tracked = instances[source[out]]
        tracked.pred_ids = torch.tensor([track_of[d].id for d in out], dtype=torch.int64)
        self.counts["tracked"] += len(tracked)
        self.hypotheses = [hypotheses[d] for d in out]
        return tracked

    def _light(self, instances):
        """The detections scoring at least ``score_thresh`` without their masks (their boxes,
        scores, classes and the fields the association reads: its ``fields``, every field when
        it does not say; plus ``association_masks`` when they have masks), and the index of each
        in ``instances``."""
        source = torch.arange(len(instances))
        if instances.has("scores"):
            kept = instances.scores >= self.score_thresh
            self.counts["below_score"] += int((~kept).sum())
            source = source[kept]
        wanted = getattr(self.association, "fields", None)
        light = Instances(instances.image_size, **{
            name: value[source] for name, value in instances.get_fields().items()
            if name != "pred_masks" and (wanted is None or name in TRACKED_FIELDS + wanted)})
        if instances.has("pred_masks"):
            self.stride = association_stride(*instances.image_size)
            light.association_masks = association_masks(instances.pred_masks, self.stride,
                                                        source)
        return light, source


def build_tracker(cfg):
    """A new tracker for one video: the one registered as ``MODEL.TRACKER.NAME``, built from
    ``cfg``; a ``ConfigError`` naming the key and the known names for an unknown one."""
    return find_part("trackers", cfg.MODEL.TRACKER.NAME, "MODEL.TRACKER.NAME")(cfg)
