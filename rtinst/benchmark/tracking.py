"""Tracker settings compared on recorded detections: a model's per-frame detections on a video
dataset are recorded once (``record_detections``, through the one video loop), then replayed
(``ReplayedDetections``, a video model) through ``inference_on_videos`` and the YouTube-VIS
evaluator for each tracker setting (``evaluate_tracker``): the path of ``train_net.py
--eval-only`` on that dataset, without the model's time."""
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from rtinst.data.dataset_mapper import build_dataset_mapper
from rtinst.evaluation import build_ytvis_evaluator
from rtinst.video import VideoLoop, inference_on_videos
from rtinst.video.inference import frame_input

__all__ = ["ReplayedDetections", "evaluate_tracker", "load_detections", "record_detections",
           "save_detections"]

class _Recorder:
    """A tracker that keeps every frame's detections scoring at least ``min_score``."""

    def __init__(self, min_score):
        self.min_score = min_score
        self.frames = []

    def update(self, instances, frame_outputs=None):
        self.frames.append(instances[instances.scores >= self.min_score])
        return instances


def _packed(instances):
    """One frame's detections as tensors only (masks bit-packed)."""
    record = {"image_size": torch.tensor(instances.image_size),
              "pred_boxes": instances.pred_boxes.tensor, "scores": instances.scores,
              "pred_classes": instances.pred_classes}
    if instances.has("pred_masks"):
        height, width = instances.image_size
        masks = instances.pred_masks.numpy().astype(bool).reshape(len(instances), height * width)
        record["mask_bits"] = torch.from_numpy(np.packbits(masks, axis=1))
    return record


def _unpacked(record):
    height, width = record["image_size"].tolist()
    instances = Instances((height, width), pred_boxes=Boxes(record["pred_boxes"]),
                          scores=record["scores"], pred_classes=record["pred_classes"])
    if "mask_bits" in record:
        bits = np.unpackbits(record["mask_bits"].numpy(), axis=1, count=height * width)
        instances.pred_masks = torch.from_numpy(bits.reshape(-1, height, width).astype(bool))
    return instances


def record_detections(cfg, model, dataset_name, min_score=0.05):
    """``{image_id: frame record}`` of every frame of every video of ``dataset_name`` (image ids
    as ``inference_on_videos`` gives them), the detections scoring at least ``min_score``."""
    mapper = build_dataset_mapper(cfg, is_train=False)
    records = {}
    with torch.no_grad():
        for video in DatasetCatalog.get(dataset_name):
            recorder = _Recorder(min_score)
            loop = VideoLoop(model, recorder)
            ids = []
            for t in range(video["length"]):
                inputs = frame_input(video, t)
                loop.step(mapper(inputs))
                ids.append(inputs["image_id"])
            records.update({i: _packed(f) for i, f in zip(ids, recorder.frames)})
    return records


def save_detections(records, path):
    torch.save(records, path)


def load_detections(path):
    """Records written by ``save_detections`` (tensors only: ``weights_only``)."""
    return torch.load(path, weights_only=True)


class ReplayedDetections:
    """A video model whose output for a frame is its recorded detections."""

    def __init__(self, records):
        self.records = records
        self.training = False

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def video_state(self):
        return None

    def forward_frame(self, inputs, state):
        return {"instances": _unpacked(self.records[inputs["image_id"]])}, state


def evaluate_tracker(cfg, records, dataset_name):
    """The YouTube-VIS results (``{"segm" or "bbox", "tracking", "speed"}``) of the tracker of
    ``cfg`` on the recorded detections of ``dataset_name``."""
    evaluator = build_ytvis_evaluator(cfg, dataset_name, None)
    return inference_on_videos(cfg, ReplayedDetections(records), dataset_name, evaluator)
