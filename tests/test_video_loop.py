"""The video model contract and the one frame loop (``rtinst.video.loop``): a video model's
state carried from frame to frame, an image model adapted without state, the tracker given the
frame's other outputs, and the tracker chosen by ``MODEL.TRACKER.NAME``."""
import pytest
import torch
from detectron2.structures import Boxes, Instances

from rtinst.config import get_cfg
from rtinst.errors import ConfigError
from rtinst.video import (
    ImageModelAsVideo,
    OnlineTracker,
    VideoLoop,
    as_video_model,
    build_tracker,
    run_video,
)


def one_detection(score):
    instances = Instances((10, 10))
    instances.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 5.0, 5.0]]))
    instances.scores = torch.tensor([score])
    instances.pred_classes = torch.zeros(1, dtype=torch.int64)
    return instances


class CountingVideoModel:
    """State: the frames seen; a keyframe every 2 frames; the score says the count."""

    def video_state(self):
        return 0

    def forward_frame(self, inputs, count):
        return {"instances": one_detection(inputs["weight"] * (count + 1)),
                "keyframe": count % 2 == 0}, count + 1


class ImageModel(torch.nn.Module):
    def forward(self, batched_inputs):
        return [{"instances": one_detection(x["weight"])} for x in batched_inputs]


class RecordingTracker:
    """Gives every instance ID 7 and keeps what the loop handed it."""

    def __init__(self):
        self.seen = []

    def update(self, instances, frame_outputs):
        self.seen.append((instances.scores.tolist(), frame_outputs.get("keyframe")))
        instances.pred_ids = torch.full((len(instances),), 7)
        return instances


def test_the_state_is_carried_and_the_tracker_sees_the_frame_outputs():
    tracker = RecordingTracker()
    frames = [{"weight": 0.1}] * 4
    outputs = list(run_video(CountingVideoModel(), frames, tracker))
    assert [o["instances"].scores.item() for o in outputs] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert [o["keyframe"] for o in outputs] == [True, False, True, False]
    assert [o["instances"].pred_ids.tolist() for o in outputs] == [[7]] * 4
    assert [keyframe for _, keyframe in tracker.seen] == [True, False, True, False]


def test_each_video_starts_from_the_models_initial_state():
    model = CountingVideoModel()
    loop = VideoLoop(model, RecordingTracker())
    loop.step({"weight": 1.0}), loop.step({"weight": 1.0})
    again = VideoLoop(model, RecordingTracker())
    assert again.step({"weight": 1.0})["instances"].scores.item() == 1.0
    assert (loop.frames, loop.state, again.frames) == (2, 2, 1)
    assert loop.model_seconds > 0 and loop.association_seconds > 0


def test_a_frame_of_another_size_is_refused_by_name():
    class Resizing(ImageModel):
        def forward(self, batched_inputs):
            outputs = super().forward(batched_inputs)
            size = batched_inputs[0]["size"]
            outputs[0]["instances"] = Instances(size, **outputs[0]["instances"].get_fields())
            return outputs

    loop = VideoLoop(Resizing(), RecordingTracker())
    loop.step({"weight": 0.5, "size": (10, 10), "file_name": "a.jpg"})
    with pytest.raises(ValueError, match=r"b.jpg: a frame of 12x10 in a video of 10x10"):
        loop.step({"weight": 0.5, "size": (12, 10), "file_name": "b.jpg"})


def test_an_image_model_runs_frame_by_frame_without_state():
    model = ImageModel()
    assert isinstance(as_video_model(model), ImageModelAsVideo)
    assert as_video_model(CountingVideoModel()).__class__ is CountingVideoModel
    outputs = list(run_video(model, [{"weight": 0.5}, {"weight": 0.6}], RecordingTracker()))
    assert [o["instances"].scores.item() for o in outputs] == pytest.approx([0.5, 0.6])
    assert set(outputs[0]) == {"instances", "detections"}  # the tracked and the model's own


def test_the_tracker_is_chosen_by_its_key():
    cfg = get_cfg()
    assert isinstance(build_tracker(cfg), OnlineTracker)
    cfg.MODEL.TRACKER.NAME = "NoSuchTracker"
    with pytest.raises(ConfigError, match=r"MODEL.TRACKER.NAME: no tracker 'NoSuchTracker'.*"
                                          r"OnlineTracker"):
        build_tracker(cfg)
