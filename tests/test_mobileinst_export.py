"""MobileInst's ONNX export (projects/MobileInst/mobileinst/export.py): the NMS-free inference
inside the graph gives the ``Predictor``'s instances on real, downscaled, non-square COCO photos;
with kernel reuse, the keyframe and reuse graphs chained by ``VideoONNXPredictor`` give the
PyTorch video model's frames."""
import cv2
import numpy as np
import onnx
import pytest
import torch
from detectron2.modeling import build_model

from rtinst.engine.predictor import Predictor
from rtinst.export import ONNXPredictor, VideoONNXPredictor, export_onnx, quantize_onnx
from instance_pairs import mask_iou, pair_instances
from shared_files import COCO_MINI, require_shared
from test_mobileinst import tiny_cfg
from tiny_models import batch_with_masks, train_on_batch

pytestmark = pytest.mark.slow

# the graph's input: the size to which the Predictor pads the photos (128 px high, 167-192 px
# wide; the backbone's size divisibility is 64). The global tokens (X6) pool the whole padded
# input, so another canvas (more padding) gives slightly other instances (docs/methods)
HEIGHT, WIDTH = 128, 192
OPTS = ("INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
        "MODEL.MOBILEINST.TEST.SCORE_THRESH", "0.1")


def _trained(tmp_path_factory, name, *opts):
    """The tiny MobileInst-MNv2 trained for 30 iterations on two synthetic images, saved."""
    torch.manual_seed(0)
    cfg = tiny_cfg(*OPTS, *opts)
    model = train_on_batch(build_model(cfg), batch_with_masks(), iterations=30, lr=0.002)
    folder = tmp_path_factory.mktemp(name)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(folder / "model.pth")
    return cfg, model.eval(), folder


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    cfg, model, folder = _trained(tmp_path_factory, "image",
                                  "MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES", "1")
    return cfg, export_onnx(model, folder / "mobileinst.onnx", HEIGHT, WIDTH, "RGB")


def _photos(count=3):
    """COCO photos in landscape, downscaled (area) to 128 px high: both predictors then take
    them at their own size (no second resize of either)."""
    photos = []
    for path in sorted((require_shared(COCO_MINI) / "train2017").glob("*.jpg")):
        image = cv2.imread(str(path))
        height, width = image.shape[:2]
        if height * 1.3 < width <= height * 1.5:
            size = (round(width * HEIGHT / height), HEIGHT)
            photos.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        if len(photos) == count:
            return photos
    raise AssertionError("too few landscape photos")


def _assert_same_instances(expected, actual):
    assert actual.image_size == expected.image_size
    assert len(expected) == len(actual) > 0
    pairs = pair_instances(expected, actual, score_tol=1e-3)
    ious = [mask_iou(expected.pred_masks[i], actual.pred_masks[j]) for i, j in pairs]
    assert min(ious) >= 0.98, sorted(ious)[:5]


def test_onnx_runtime_gives_the_predictors_instances_on_downscaled_photos(image_export):
    cfg, path = image_export
    predictor, onnx_predictor = Predictor(cfg), ONNXPredictor(path)
    for photo in _photos():
        _assert_same_instances(predictor(photo)["instances"], onnx_predictor(photo)["instances"])


def test_masks_stay_inside_the_letterboxed_picture(image_export):
    _, path = image_export
    predictor = ONNXPredictor(path)
    photo = _photos(1)[0]
    canvas, size = predictor.prepare(photo)
    _, _, _, masks = predictor.run(canvas, size)
    assert len(masks) and not masks[:, :, size[1]:].any()


def test_graph_of_a_model_that_finds_nothing_runs(tmp_path):
    cfg = tiny_cfg(*OPTS, "MODEL.MOBILEINST.TEST.SCORE_THRESH", "1.0")
    path = export_onnx(build_model(cfg).eval(), tmp_path / "none.onnx", HEIGHT, WIDTH, "RGB")
    photo = _photos(1)[0]
    instances = ONNXPredictor(path)(photo)["instances"]
    assert len(instances) == 0 and instances.pred_masks.shape[1:] == photo.shape[:2]


def test_the_post_processing_is_inside_the_graph_without_nms(image_export):
    _, path = image_export
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"TopK", "Resize", "Sigmoid"} <= ops and "NonMaxSuppression" not in ops


def test_int8_model_is_smaller_and_still_finds_objects(image_export, tmp_path):
    _, path = image_export
    target = quantize_onnx(path, tmp_path / "int8.onnx", "dynamic")
    assert target.stat().st_size < path.stat().st_size
    photo = _photos(1)[0]
    actual = ONNXPredictor(target)(photo)["instances"]
    assert len(actual) > 0 and actual.pred_masks.shape[1:] == photo.shape[:2]


def test_keyframe_and_reuse_graphs_follow_the_video_model(tmp_path_factory):
    """T = 3: frames 0 and 3 run the keyframe graph, 1, 2 and 4 the reuse graph."""
    cfg, model, folder = _trained(tmp_path_factory, "video",
                                  "MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES", "3")
    export_onnx(model, folder / "mobileinst.onnx", HEIGHT, WIDTH, "RGB")
    video = VideoONNXPredictor(folder / "mobileinst.keyframe.onnx")
    photos = _photos(1) * 2 + _photos(3)[1:] + _photos(1)
    state, graphs = model.video_state(), []
    for photo in photos:
        rgb = torch.from_numpy(np.ascontiguousarray(photo[:, :, ::-1])).permute(2, 0, 1).float()
        with torch.no_grad():
            expected, state = model.forward_frame(
                {"image": rgb, "height": photo.shape[0], "width": photo.shape[1]}, state)
        actual = video(photo)
        graphs.append(video.last_graph)
        _assert_same_instances(expected["instances"], actual["instances"])
    assert graphs == ["keyframe", "frame", "frame", "keyframe", "frame"]
