"""YOLACT's ONNX export: preprocessing (the picture resized to the network input), Fast NMS,
mask assembly, crop and thresholding all inside the graph, ONNX Runtime giving the PyTorch
predictor's instances on a real photo of another size than the graph's."""

import cv2
import onnx
import pytest
import torch

from detectron2.modeling import build_model
from rtinst.engine.predictor import Predictor
from rtinst.export import ONNXPredictor, export_onnx, export_pipeline, quantize_onnx
from instance_pairs import mask_iou, pair_instances
from shared_files import COCO_MINI, require_shared
from tiny_models import batch_with_masks, tiny_yolact_cfg, train_on_batch

# YOLACT at 128 px, exported at that size (the photo stretched to it, as the model does)
OPTS = ("MODEL.YOLACT.DETECTIONS_PER_IMAGE", "20", "MODEL.YOLACT.MASK_RESCORING", "True")
HEIGHT, WIDTH = 128, 128  # the network input: the photo is resized once


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny YOLACT++ trained for 40 iterations on two synthetic images, saved, exported."""
    torch.manual_seed(0)
    cfg = tiny_yolact_cfg(*OPTS)
    model = train_on_batch(build_model(cfg), batch_with_masks(), iterations=40, lr=0.005)
    folder = tmp_path_factory.mktemp("yolact")
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(folder / "model.pth")
    path = export_onnx(model.eval(), folder / "yolact.onnx", HEIGHT, WIDTH, input_format="RGB")
    return cfg, model, path


def _photo():
    images = sorted((require_shared(COCO_MINI) / "train2017").glob("*.jpg"))
    return cv2.imread(str(images[0]))


def test_onnx_runtime_gives_the_predictors_instances_on_a_resized_photo(trained):
    cfg, _, path = trained
    photo = _photo()  # 422 x 640, resized to 128 x 128
    expected = Predictor(cfg)(photo)["instances"]
    actual = ONNXPredictor(path)(photo)["instances"]
    assert actual.image_size == expected.image_size == photo.shape[:2]
    assert len(expected) == len(actual) > 0
    pairs = pair_instances(expected, actual, score_tol=1e-3)
    ious = [mask_iou(expected.pred_masks[i], actual.pred_masks[j]) for i, j in pairs
            if expected.pred_masks[i].sum() > 500]  # masks of more than a few pixels
    assert ious and min(ious) >= 0.98, sorted(ious)[:5]
    box_diff = max((expected.pred_boxes.tensor[i] - actual.pred_boxes.tensor[j]).abs().max()
                   for i, j in pairs)
    assert box_diff < 3.0  # pixels of the 640 px photo, after two resizes (letterbox, network)


def test_pipeline_is_the_models_own_inference_on_a_full_canvas(trained):
    """With the picture filling a 96 x 160 canvas (resized to 128 x 128 inside), the traced
    function gives the model's detections (boxes to 1e-4 px, the same scores and masks)."""
    _, model, _ = trained
    image = torch.from_numpy(cv2.resize(_photo(), (160, 96))[:, :, ::-1].copy())
    with torch.no_grad():
        boxes, scores, classes, masks = export_pipeline(model, 96, 160)(
            image, torch.tensor([96, 160]))
        instances = model([{"image": image.permute(2, 0, 1)}])[0]["instances"]
    torch.testing.assert_close(boxes, instances.pred_boxes.tensor, atol=1e-4, rtol=0)
    torch.testing.assert_close(scores, instances.scores)
    assert classes.tolist() == instances.pred_classes.tolist()
    ious = [mask_iou(a.bool(), b) for a, b in zip(masks, instances.pred_masks)]
    assert min(ious) >= 0.99


def test_letterboxed_canvas_keeps_detections_inside_the_picture(trained):
    """A picture in the top-left 64 x 100 of the canvas: boxes and masks stay inside it."""
    _, model, _ = trained
    canvas = torch.zeros(96, 160, 3, dtype=torch.uint8)
    canvas[:64, :100] = torch.from_numpy(cv2.resize(_photo(), (100, 64))[:, :, ::-1].copy())
    with torch.no_grad():
        boxes, _, _, masks = export_pipeline(model, 96, 160)(canvas, torch.tensor([64, 100]))
    assert len(boxes) > 0
    assert (boxes[:, 0::2] <= 100).all() and (boxes[:, 1::2] <= 64).all()
    assert masks[:, 64:].sum() == 0 and masks[:, :, 100:].sum() == 0


def test_graph_of_a_model_that_finds_nothing_runs(tmp_path):
    """Exported (and traced on a blank image) with no detections passing the threshold: the
    graph still has all of the post-processing (no branch on the detection count was traced)."""
    cfg = tiny_yolact_cfg("MODEL.YOLACT.SCORE_THRESH", "1.0", *OPTS)
    path = export_onnx(build_model(cfg).eval(), tmp_path / "none.onnx", 96, 96, "RGB")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"GlobalMaxPool", "GridSample", "MatMul"} <= ops
    instances = ONNXPredictor(path)(_photo())["instances"]
    assert len(instances) == 0 and instances.pred_masks.shape[1:] == _photo().shape[:2]


def test_whole_post_processing_is_inside_the_graph(trained):
    ops = {node.op_type for node in onnx.load(str(trained[2])).graph.node}
    # resize of the picture, NMS's sort / top-k, mask assembly, re-scoring's max pool, paste
    assert {"Resize", "TopK", "NonZero", "MatMul", "Sigmoid", "GlobalMaxPool",
            "GridSample"} <= ops


def test_int8_model_runs_and_finds_the_same_objects(trained, tmp_path):
    cfg, _, path = trained
    target = quantize_onnx(path, tmp_path / "yolact.int8.onnx", "dynamic")
    assert target.stat().st_size < path.stat().st_size
    photo = _photo()
    actual = ONNXPredictor(target)(photo)["instances"]
    assert len(actual) > 0
    assert actual.pred_masks.shape[1:] == photo.shape[:2]
