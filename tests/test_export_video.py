"""Multi-graph, stateful ONNX export (rtinst/export/graphs.py) and ``VideoONNXPredictor``: a toy
video model whose keyframe graph caches the picture's mean colour and starts a frame counter,
and whose frame graph thresholds with the cached colour and counts on; ONNX Runtime over a short
video against the model's own PyTorch ``forward_frame`` loop."""
import importlib.util
import json
import logging

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from rtinst import register_method
from rtinst.export import GraphSpec, ONNXPredictor, PipelineVideo, VideoONNXPredictor, export_onnx
from rtinst.export.graphs import VideoSteps, video_graphs
from rtinst.export.video_export import export_video_graphs
from rtinst.methods import METHODS
from train_net_runner import ROOT

SIZE = 32
METHOD = "export_video_toy"


def _detect(image, image_size, colour, score, label):
    """One instance: the picture's pixels brighter than ``colour`` (summed over channels), its
    box, ``score`` and class ``label``, as the export outputs are."""
    ys, xs = torch.arange(image.shape[0]), torch.arange(image.shape[1])
    inside = (ys < image_size[0])[:, None] & (xs < image_size[1])[None, :]
    mask = (image.float().sum(-1) > colour.sum()) & inside
    rows, cols = mask.float().amax(1) > 0, mask.float().amax(0) > 0
    big = float(max(image.shape))
    box = torch.stack([torch.where(cols, xs.float(), big).min(),
                       torch.where(rows, ys.float(), big).min(),
                       torch.where(cols, xs.float() + 1, 0.0).max(),
                       torch.where(rows, ys.float() + 1, 0.0).max()])
    return (box[None], score.reshape(1), torch.full((1,), label, dtype=torch.int64),
            mask[None].to(torch.uint8))


class ToyKeyframe(nn.Module):
    """-> the instance above the picture's mean colour; state: that colour, a counter at 0."""

    def forward(self, image, image_size):
        ys, xs = torch.arange(image.shape[0]), torch.arange(image.shape[1])
        inside = ((ys < image_size[0])[:, None] & (xs < image_size[1])[None, :]).float()
        colour = (image.float() * inside[..., None]).sum((0, 1)) / inside.sum()
        count = torch.zeros(1)
        return (*_detect(image, image_size, colour, 1 / (count + 2), 0), colour, count)


class ToyFrame(nn.Module):
    """-> the instance above the keyframe's colour, scored 1 / (frames since it + 2); writes the
    counter only (the colour stays)."""

    def forward(self, image, image_size, colour, count):
        count = count + 1
        return (*_detect(image, image_size, colour, 1 / (count + 2), 1), count)


class ToyVideoModel(nn.Module):
    """The toy with the PyTorch video contract: ``video_state()``, ``forward_frame``."""

    def __init__(self, cfg=None, keyframe_interval=3):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1))
        self.keyframe, self.frame = ToyKeyframe(), ToyFrame()
        self.keyframe_interval = keyframe_interval

    def video_state(self):
        return {"index": 0}

    def forward_frame(self, inputs, state):
        """``inputs["image"]`` (3, H, W) in BGR, as Detectron2's models take it."""
        image = inputs["image"].permute(1, 2, 0).to(torch.uint8)
        size = torch.tensor(image.shape[:2])
        index, interval = state["index"], self.keyframe_interval
        with torch.no_grad():
            if index == 0 or (interval and index % interval == 0):
                *outputs, colour, count = self.keyframe(image, size)
                state = {"colour": colour, "count": count}
            else:
                *outputs, count = self.frame(image, size, state["colour"], state["count"])
                state = {**state, "count": count}
        instances = Instances(tuple(image.shape[:2]))
        instances.pred_boxes, instances.scores = Boxes(outputs[0]), outputs[1]
        instances.pred_classes, instances.pred_masks = outputs[2], outputs[3].bool()
        return {"instances": instances}, {**state, "index": index + 1}


class ToyImageModel(ToyVideoModel):
    """The same toy exported as an image model (its keyframe graph alone)."""


class ToyVideoPipeline(nn.Module):
    def __init__(self, model, height, width):
        super().__init__()
        self.model = model
        self.keyframe_interval = model.keyframe_interval

    def graphs(self):
        return {"keyframe": GraphSpec(self.model.keyframe, (), ("colour", "count")),
                "frame": GraphSpec(self.model.frame, ("colour", "count"), ("count",))}


class ToyImagePipeline(nn.Module):
    """The keyframe graph's outputs without its state: one stateless graph."""

    def __init__(self, model, height, width):
        super().__init__()
        self.model = model

    def forward(self, image, image_size):
        return self.model.keyframe(image, image_size)[:4]


@pytest.fixture(scope="module", autouse=True)
def toy_method():
    """The toy's pipelines registered as a method's, and its class as a meta-architecture, for
    this module only."""
    register_method(METHOD, export_pipelines={"ToyVideoModel": ToyVideoPipeline,
                                              "ToyImageModel": ToyImagePipeline})
    META_ARCH_REGISTRY.register(ToyVideoModel)
    yield
    METHODS.pop(METHOD)
    META_ARCH_REGISTRY._obj_map.pop("ToyVideoModel")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_onnx(ToyVideoModel(), tmp_path_factory.mktemp("video") / "toy.onnx", SIZE,
                       SIZE, input_format="BGR")


def video(count=7):
    """BGR frames: a bright square moving on a background that brightens frame after frame (so
    that the keyframe's cached colour and a fresh one threshold differently)."""
    frames = []
    for i in range(count):
        frame = np.full((SIZE, SIZE, 3), 30 + 12 * i, np.uint8)
        frame[:, :, 1] += np.arange(SIZE, dtype=np.uint8)  # a gradient: the threshold shows
        frame[4 + i:14 + i, 6 + 2 * i:16 + 2 * i] = 230
        frames.append(frame)
    return frames


def forward_frames(model, frames):
    """The PyTorch contract's loop: ``forward_frame`` from ``video_state()``."""
    state, outputs = model.video_state(), []
    for frame in frames:
        out, state = model.forward_frame({"image": torch.from_numpy(frame).permute(2, 0, 1)
                                          .float()}, state)
        outputs.append(out["instances"])
    return outputs


def assert_same(a: Instances, b: Instances):
    assert a.image_size == b.image_size and len(a) == len(b) == 1
    assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.allclose(a.scores, b.scores)
    assert torch.equal(a.pred_classes, b.pred_classes)
    assert torch.equal(a.pred_masks, b.pred_masks)


@pytest.mark.parametrize("interval,graphs", [
    (None, "KFFKFFK"),  # the export's own: every 3 frames
    (0, "KFFFFFF"),     # only the first frame
    (1, "KKKKKKK"),     # every frame
])
def test_onnx_runtime_follows_forward_frame_over_a_video(exported, interval, graphs):
    predictor = VideoONNXPredictor(exported, keyframe_interval=interval)
    reference = forward_frames(ToyVideoModel(keyframe_interval=3 if interval is None
                                             else interval), video())
    ran = ""
    for frame, expected in zip(video(), reference):
        assert_same(predictor(frame)["instances"], expected)
        ran += predictor.last_graph[0].upper()
    assert ran == graphs
    # the counter was carried: 1 / (frames since the keyframe + 2)
    since = [0] * 7 if interval == 1 else [i % 3 if interval is None else i for i in range(7)]
    assert [float(r.scores) for r in reference] == pytest.approx([1 / (s + 2) for s in since])


def test_the_cached_colour_is_what_the_frame_graph_thresholds_with(exported):
    carried = VideoONNXPredictor(exported)
    fresh = VideoONNXPredictor(exported, keyframe_interval=1)
    masks = [(carried(f)["instances"].pred_masks, fresh(f)["instances"].pred_masks)
             for f in video(3)]
    assert torch.equal(*masks[0])  # both keyframes
    assert not torch.equal(*masks[2])  # the brighter background passes the older threshold


def test_reset_restarts_the_state(exported):
    predictor = VideoONNXPredictor(exported)
    first = [predictor(f)["instances"] for f in video(5)]
    predictor.reset()
    assert predictor.last_graph is None
    again = [predictor(f)["instances"] for f in video(2)]
    assert predictor.last_graph == "frame"
    for a, b in zip(first, again):
        assert_same(a, b)


def test_one_file_per_graph_with_the_state_and_the_policy_in_the_metadata(exported):
    folder = exported.parent
    assert exported == folder / "toy.keyframe.onnx"
    assert sorted(p.name for p in folder.iterdir()) == ["toy.frame.onnx", "toy.keyframe.onnx"]
    video_props = {
        "keyframe_interval": 3,
        "graphs": {"keyframe": {"file": "toy.keyframe.onnx", "state_inputs": [],
                                "state_outputs": ["colour", "count"]},
                   "frame": {"file": "toy.frame.onnx", "state_inputs": ["colour", "count"],
                             "state_outputs": ["count"]}},
        "state": {"colour": {"shape": [3], "dtype": "float32"},
                  "count": {"shape": [1], "dtype": "float32"}}}
    outputs = ["boxes", "scores", "classes", "masks"]
    for role, inputs, written in [
        ("keyframe", ["image", "image_size"], ["next_state.colour", "next_state.count"]),
        ("frame", ["image", "image_size", "state.colour", "state.count"], ["next_state.count"]),
    ]:
        graph = onnx.load(str(folder / f"toy.{role}.onnx"))
        props = {p.key: p.value for p in graph.metadata_props}
        assert json.loads(props.pop("video")) == video_props
        assert props == {"input_format": "BGR", "input_size": f"{SIZE},{SIZE}",
                         "pad_value": "100,110,120", "picture_fit": "letterbox",
                         "mask_format": "image", "graph": role}
        assert [i.name for i in graph.graph.input] == inputs
        assert [o.name for o in graph.graph.output] == outputs + written
    # any one file loads the set
    assert VideoONNXPredictor(folder / "toy.frame.onnx").paths == {
        "keyframe": exported, "frame": folder / "toy.frame.onnx"}


def test_image_predictor_refuses_a_video_graph(exported):
    for name in ("toy.keyframe.onnx", "toy.frame.onnx"):
        with pytest.raises(ValueError, match=f"{name} is the '.*' graph of a video export.*"
                                             "VideoONNXPredictor"):
            ONNXPredictor(exported.parent / name)


def test_a_single_graph_export_runs_every_frame_on_its_own(tmp_path):
    path = export_onnx(ToyImageModel(), tmp_path / "image.onnx", SIZE, SIZE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.onnx"]
    props = {p.key for p in onnx.load(str(path)).metadata_props}
    assert props == {"input_format", "input_size", "pad_value", "picture_fit", "mask_format"}
    video_mode, image_mode = VideoONNXPredictor(path), ONNXPredictor(path)
    for frame in video(3):
        assert_same(video_mode(frame)["instances"], image_mode(frame)["instances"])
        assert video_mode.last_graph == "keyframe"
    with pytest.raises(ValueError, match="image.onnx is a single-graph export"):
        VideoONNXPredictor(path, keyframe_interval=3)


def test_pipeline_video_is_the_parity_reference(exported):
    reference = PipelineVideo(ToyVideoPipeline(ToyVideoModel(), SIZE, SIZE))
    predictor = VideoONNXPredictor(exported)
    size = torch.tensor([SIZE, SIZE])
    for frame in video(5):
        with torch.no_grad():
            expected = reference(torch.from_numpy(frame), size)
        for a, b in zip(expected, predictor.run(frame)):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-6)
    assert reference.steps.last_graph == predictor.last_graph == "frame"


class _Declares(ToyVideoPipeline):
    """A pipeline declaring ``graphs`` (role: (state in, state out)) and ``interval``."""

    def __init__(self, graphs, interval=3, model=None):
        super().__init__(model or ToyVideoModel(), SIZE, SIZE)
        self.declared, self.keyframe_interval = graphs, interval

    def graphs(self):
        return {role: GraphSpec(getattr(self.model, role, self.model.keyframe), *states)
                for role, states in self.declared.items()}


KEY, FRAME = ((), ("colour", "count")), (("colour", "count"), ("count",))


@pytest.mark.parametrize("graphs,interval,message", [
    ({"key": KEY, "frame": FRAME}, 3, r"must be \['keyframe', 'frame'\] in this order"),
    ({"keyframe": (("count",), KEY[1]), "frame": FRAME}, 3, r"keyframe graph reads state"),
    ({"keyframe": ((), ("colour",)), "frame": FRAME}, 3, r"frame graph reads state \['count'\]"),
    ({"keyframe": KEY, "frame": (("colour",), ("speed",))}, 3, r"writes state \['speed'\]"),
    ({"keyframe": KEY, "frame": FRAME}, -1, r"keyframe_interval must be an int >= 0"),
    ({"keyframe": KEY, "frame": FRAME}, "3", r"keyframe_interval must be an int >= 0"),
])
def test_bad_declarations_are_named(graphs, interval, message):
    with pytest.raises(ValueError, match=message):
        video_graphs(_Declares(graphs, interval))


def test_bad_graphs_are_named_at_export(tmp_path):
    example = (torch.zeros(SIZE, SIZE, 3, dtype=torch.uint8), torch.tensor([SIZE, SIZE]))
    args = (tmp_path / "x.onnx", example, {}, 17)
    with pytest.raises(ValueError, match="_Declares's keyframe graph returns 6 tensors"):
        export_video_graphs(_Declares({"keyframe": ((), ("colour",)),
                                       "frame": (("colour",), ())}), *args)

    class Float64Count(ToyFrame):
        def forward(self, image, image_size, colour, count):
            *outputs, count = super().forward(image, image_size, colour, count)
            return (*outputs, count.double())

    model = ToyVideoModel()
    model.frame = Float64Count()
    with pytest.raises(ValueError, match="frame graph writes state 'count' as torch.float64"):
        export_video_graphs(_Declares({"keyframe": KEY, "frame": FRAME}, model=model), *args)

    class IgnoresColour(ToyFrame):
        def forward(self, image, image_size, colour, count):
            return super().forward(image, image_size, torch.full((3,), 100.0), count)

    model.frame = IgnoresColour()
    with pytest.raises(ValueError, match=r"frame graph does not use its inputs \['state.colour'"):
        export_video_graphs(_Declares({"keyframe": KEY, "frame": FRAME}, model=model), *args)


def _with_video_props(source, target, edit):
    graph = onnx.load(str(source))
    props = {p.key: p.value for p in graph.metadata_props}
    props["video"] = edit(json.loads(props["video"]))
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(target))
    return target


@pytest.mark.parametrize("edit,message", [
    (lambda v: "{not json", r"Expecting property name"),
    (lambda v: json.dumps({**v, "keyframe_interval": 2.5}), "keyframe_interval must be an int"),
    (lambda v: json.dumps({k: x for k, x in v.items() if k != "state"}), "no key state"),
    (lambda v: json.dumps({**v, "graphs": {**v["graphs"], "frame": {
        **v["graphs"]["frame"], "file": "../elsewhere.onnx"}}}), r"graphs.frame.file must be"),
    (lambda v: json.dumps({**v, "graphs": {**v["graphs"], "frame": {
        **v["graphs"]["frame"], "state_inputs": "colour"}}}), "graphs.frame.state_inputs must"),
    (lambda v: json.dumps({**v, "state": {"colour": v["state"]["colour"]}}),
     r"state \['count'\] has no entry in 'state'"),
])
def test_bad_metadata_is_named(exported, tmp_path, edit, message):
    target = _with_video_props(exported, tmp_path / "toy.keyframe.onnx", edit)
    with pytest.raises(ValueError, match=f"toy.keyframe.onnx: metadata 'video': {message}"):
        VideoONNXPredictor(target)


def test_a_missing_or_foreign_graph_file_is_named(exported, tmp_path):
    keyframe = _with_video_props(exported, tmp_path / "toy.keyframe.onnx", json.dumps)
    with pytest.raises(FileNotFoundError, match="toy.frame.onnx"):
        VideoONNXPredictor(keyframe)
    # another export's frame graph (every 2 frames) next to this keyframe graph
    _with_video_props(exported.parent / "toy.frame.onnx", tmp_path / "toy.frame.onnx",
                      lambda v: json.dumps({**v, "keyframe_interval": 2}))
    with pytest.raises(ValueError, match="toy.frame.onnx: its metadata 'video' differs"):
        VideoONNXPredictor(keyframe)


def test_video_steps_follow_the_policy():
    steps = VideoSteps({"keyframe": ((), ("n",)), "frame": (("n",), ("n",))}, 4)
    seen = [steps.step(lambda role, state: (role, [state[0] + 1 if state else 0]))
            for _ in range(9)]
    assert seen == ["keyframe", *["frame"] * 3] * 2 + ["keyframe"]
    assert steps.state == {"n": 0} and steps.frame_index == 9


def _export_tool():
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "tools/export_onnx.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_export_tool_writes_every_graph_and_checks_parity_frame_by_frame(tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(video(5)):
        assert cv2.imwrite(str(images / f"{i}.png"), frame)
    output = tmp_path / "out" / "toy.onnx"
    arguments = ["--config-file", str(ROOT / "configs/BlitzMask/MNV2_shapes.yaml"),
                 "--output", str(output), "--size", str(SIZE), str(SIZE), "--images",
                 str(images), "--time", "1", "--opts", "MODEL.META_ARCHITECTURE", "ToyVideoModel"]
    caplog.set_level(logging.INFO, logger="rtinst.export")
    tool = _export_tool()
    assert tool.main(arguments) == 0
    for role in ("keyframe", "frame"):
        assert f"wrote {output.parent / f'toy.{role}.onnx'}" in caplog.text
    assert ("parity with PyTorch on 5 frames of one video (PyTorch pipeline): "
            "{\"parity_ok\": true") in caplog.text
    assert "fp32: graph alone" in caplog.text
    with pytest.raises(SystemExit, match="ToyVideoModel exports a video pipeline.*--quantize"):
        tool.main(arguments[:-3] + ["--quantize", "dynamic", *arguments[-3:]])


def test_sessions_do_not_spin_after_a_run(exported):
    """Spinning threads would hold the cores after each run, slowing whatever runs next (the
    benchmark's interleaved models: the rows after an ONNX Runtime row ran 1.5-2x slower)."""
    predictor = VideoONNXPredictor(exported)
    assert len(predictor.sessions) == 2
    for session in predictor.sessions.values():
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
