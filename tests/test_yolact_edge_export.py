"""YolactEdge's ONNX export (projects/YOLACT/yolact/yolact_edge_export.py): the keyframe graph and
the frame graph (C1-C3, FlowNetMini, warp, heads, post-processing), the keyframe's features
passed between them by ``VideoONNXPredictor``, give the PyTorch video model's frames on a real
photo and the same photo moved (a camera pan); INT8 through the same path; interval 1 exports
YOLACT's one graph."""
import cv2
import numpy as np
import onnx
import pytest
import torch
from detectron2.modeling import build_model

from instance_pairs import mask_iou, pair_instances
from rtinst.export import VideoONNXPredictor, export_onnx, quantize_onnx
from shared_files import COCO_MINI, require_shared
from test_yolact_edge import edge_cfg, frame
from tiny_models import train_on_batch

pytestmark = pytest.mark.slow

HEIGHT, WIDTH = 128, 128  # the network input: the photo is resized once, as the model does
OPTS = ("MODEL.YOLACT.SCORE_THRESH", "0.05", "MODEL.YOLACT.DETECTIONS_PER_IMAGE", "20",
        "MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL", "3")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny YolactEdge trained for 20 video iterations on one synthetic pair, exported."""
    torch.manual_seed(0)
    model = train_on_batch(build_model(edge_cfg(*OPTS)),
                           [{"frames": [frame(0), frame(1)]}], iterations=20, lr=0.002)
    folder = tmp_path_factory.mktemp("yolact_edge")
    export_onnx(model.eval(), folder / "edge.onnx", HEIGHT, WIDTH, input_format="RGB")
    return model, folder


def _pan(count=5, step=(12, 8)):
    """A COCO photo seen by a camera moving ``step`` px per frame: crops of it, shifted, each
    downscaled (area) to the graph's size, so that both predictors take the frames as they are
    (no resize of either)."""
    photo = cv2.imread(str(sorted((require_shared(COCO_MINI) / "train2017").glob("*.jpg"))[0]))
    height, width = photo.shape[0] - count * step[1], photo.shape[1] - count * step[0]
    return [cv2.resize(photo[t * step[1]:t * step[1] + height, t * step[0]:t * step[0] + width],
                       (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA) for t in range(count)]


def _assert_same_instances(expected, actual):
    assert actual.image_size == expected.image_size
    assert len(expected) == len(actual) > 0
    pairs = pair_instances(expected, actual, score_tol=1e-3)
    ious = [mask_iou(expected.pred_masks[i], actual.pred_masks[j]) for i, j in pairs
            if expected.pred_masks[i].sum() > 50]
    assert ious and min(ious) >= 0.98, sorted(ious)[:5]


def _run_video(model, predictor, frames):
    state, graphs = model.video_state(), []
    for photo in frames:
        rgb = torch.from_numpy(np.ascontiguousarray(photo[:, :, ::-1])).permute(2, 0, 1)
        with torch.no_grad():
            expected, state = model.forward_frame(
                {"image": rgb, "height": photo.shape[0], "width": photo.shape[1]}, state)
        actual = predictor(photo)
        graphs.append(predictor.last_graph)
        yield expected, actual
    assert graphs == ["keyframe", "frame", "frame", "keyframe", "frame"][:len(graphs)]


def test_keyframe_and_frame_graphs_follow_the_video_model(trained):
    model, folder = trained
    predictor = VideoONNXPredictor(folder / "edge.keyframe.onnx")
    for expected, actual in _run_video(model, predictor, _pan()):
        _assert_same_instances(expected["instances"], actual["instances"])


def test_the_frame_graph_has_the_flow_and_warp_inside(trained):
    _, folder = trained
    graph = onnx.load(str(folder / "edge.frame.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"GridSample", "LeakyRelu"} <= ops
    assert {i.name for i in graph.input} >= {"state.sum_p4", "state.sum_p5", "state.lateral_p3"}


def test_int8_video_graphs_still_find_objects(trained, tmp_path):
    _, folder = trained
    for role in ("keyframe", "frame"):  # (same names: the metadata names the set's files)
        target = quantize_onnx(folder / f"edge.{role}.onnx", tmp_path / f"edge.{role}.onnx")
        assert target.stat().st_size < (folder / f"edge.{role}.onnx").stat().st_size
    predictor = VideoONNXPredictor(tmp_path / "edge.keyframe.onnx")
    found = [len(predictor(photo)["instances"]) for photo in _pan(3)]
    assert all(n > 0 for n in found), found


def test_interval_one_exports_yolacts_single_graph(tmp_path):
    model = build_model(edge_cfg("MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL", "1")).eval()
    path = export_onnx(model, tmp_path / "edge.onnx", HEIGHT, WIDTH, input_format="RGB")
    assert path.exists() and not (tmp_path / "edge.keyframe.onnx").exists()


def test_the_benchmark_times_the_video_graphs_in_turn(trained, tmp_path):
    """tools/benchmark.py --onnx --onnx-int8: a video export's entries (FP32, INT8) run the
    keyframe and frame graphs in turn over the frames, as the PyTorch video path."""
    from rtinst.benchmark.onnx_runtime import export_runtime_models
    model, _ = trained
    entries = export_runtime_models(model, tmp_path, HEIGHT, WIDTH, "RGB", 2, int8="dynamic")
    assert [label for label, _, _ in entries] == ["onnxruntime", "onnxruntime int8"]
    for _, _, runtime in entries:
        assert isinstance(runtime.predictor, VideoONNXPredictor)
        graphs = []
        for photo in _pan(4):
            rgb = torch.from_numpy(np.ascontiguousarray(photo[:, :, ::-1])).permute(2, 0, 1)
            (outputs,) = runtime([{"image": rgb}])
            graphs.append(runtime.predictor.last_graph)
        assert len(outputs["instances"]) > 0
        assert graphs == ["keyframe", "frame", "frame", "keyframe"]
