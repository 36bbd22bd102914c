"""Online tracking of any image model's per-frame instances: ``OnlineTracker.update`` gives each
detection the ID of the track it continues, or a new one.

Per frame: detections scoring below ``score_thresh`` are dropped, as are duplicates (a
detection overlapping a higher-scoring one by ``duplicate_iou`` or more: the same object as
another class, which per-class NMS keeps, or a part of it), whose classes and scores are kept as
the surviving detection's class hypotheses (``hypotheses``); the association
(``MODEL.TRACKER.ASSOCIATION``) matches the rest to the live tracks; a matched detection becomes
its track's last detection; an unmatched one opens a new track (track birth) when it scores at
least ``birth_score_thresh``, else it is dropped; a track unmatched for more than
``max_missed_frames`` frames in a row ends (track death), so that an object hidden for a few
frames keeps its ID.

``MODEL.TRACKER.NAME`` chooses the whole tracker (``build_tracker``): ``OnlineTracker`` by
default; a method whose identities come from the model itself (e.g. kernels reused within a
clip) registers its own (``rtinst.register_method(trackers=...)``), with the same ``update``.
"""
from dataclasses import dataclass

import torch
from detectron2.config import configurable
from detectron2.structures import Instances

from rtinst.methods import find_part

from .association import overlaps


@dataclass
class Track:
    """A live track: its ID, its last detection (a one-instance ``Instances`` with every field
    the model gave it) and the frames since it was last matched."""

    id: int
    last: Instances
    missed: int = 0


class OnlineTracker:
    """Assigns ``pred_ids`` (1, 2, ... in order of birth) frame by frame; one per video."""

    @configurable
    def __init__(self, *, association, score_thresh=0.05, birth_score_thresh=0.4,
                 max_missed_frames=5, duplicate_iou=0.5):
        self.association = association
        self.score_thresh = score_thresh
        self.duplicate_iou = duplicate_iou
        self.birth_score_thresh = birth_score_thresh
        self.max_missed_frames = max_missed_frames
        self.tracks = []
        self.next_id = 1
        self.hypotheses = []  # of the last update's instances: {class: score}, with duplicates'

    @classmethod
    def from_config(cls, cfg):
        build = find_part("track_associations", cfg.MODEL.TRACKER.ASSOCIATION,
                          "MODEL.TRACKER.ASSOCIATION")
        tracker = cfg.MODEL.TRACKER
        return {"association": build(cfg), "score_thresh": tracker.SCORE_THRESH,
                "birth_score_thresh": tracker.BIRTH_SCORE_THRESH,
                "max_missed_frames": tracker.MAX_MISSED_FRAMES,
                "duplicate_iou": tracker.DUPLICATE_IOU}

    def _without_duplicates(self, instances):
        """``instances`` less those overlapping a higher-scoring one by ``duplicate_iou`` (the
        same object, as another class or a part of it), and per instance kept its class
        hypotheses ``{class: best score}``: its own and its duplicates'."""
        labels = (instances.pred_classes.tolist() if instances.has("pred_classes")
                  else [0] * len(instances))
        scores = instances.scores.tolist() if instances.has("scores") else [1.0] * len(instances)
        if len(instances) < 2 or not instances.has("scores") or self.duplicate_iou >= 1:
            return instances, [{c: s} for c, s in zip(labels, scores)]
        order = torch.argsort(instances.scores, descending=True)
        iou = overlaps(instances[order], instances[order])
        kept, hypotheses = [], {}
        for i, index in enumerate(order.tolist()):
            duplicate_of = int(iou[i, kept].argmax()) if kept else None
            if duplicate_of is not None and iou[i, kept[duplicate_of]] >= self.duplicate_iou:
                owner = hypotheses[order[kept[duplicate_of]].item()]
                owner[labels[index]] = max(owner.get(labels[index], 0.0), scores[index])
                continue
            kept.append(i)
            hypotheses[index] = {labels[index]: scores[index]}
        indices = sorted(hypotheses)
        return instances[torch.tensor(indices)], [hypotheses[i] for i in indices]

    def update(self, instances: Instances, frame_outputs=None) -> Instances:
        """The frame's tracked instances (those continuing or opening a track, in their order)
        with ``pred_ids``; ``instances`` on the CPU. ``frame_outputs``: the model's other outputs
        for the frame (``rtinst.video.loop``), unused here."""
        if instances.has("scores"):
            instances = instances[instances.scores >= self.score_thresh]
        instances, hypotheses = self._without_duplicates(instances)
        matches = dict(self.association(self.tracks, instances))
        for index in set(range(len(self.tracks))) - set(matches.values()):
            self.tracks[index].missed += 1
        ids = torch.zeros(len(instances), dtype=torch.int64)
        for detection in range(len(instances)):
            if detection in matches:
                track = self.tracks[matches[detection]]
                track.last, track.missed = instances[detection], 0
            elif not instances.has("scores") or \
                    instances.scores[detection] >= self.birth_score_thresh:
                track = Track(self.next_id, instances[detection])
                self.next_id += 1
                self.tracks.append(track)
            else:
                continue
            ids[detection] = track.id
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed_frames]
        tracked = instances[ids > 0]
        tracked.pred_ids = ids[ids > 0]
        self.hypotheses = [h for h, i in zip(hypotheses, ids.tolist()) if i > 0]
        return tracked


def build_tracker(cfg):
    """A new tracker for one video: the one registered as ``MODEL.TRACKER.NAME``, built from
    ``cfg``; a ``ConfigError`` naming the key and the known names for an unknown one."""
    return find_part("trackers", cfg.MODEL.TRACKER.NAME, "MODEL.TRACKER.NAME")(cfg)
