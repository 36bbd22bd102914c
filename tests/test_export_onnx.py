"""ONNX export of BlitzMask's whole pipeline: parity with the PyTorch model and Predictor on
trained weights (synthetic and real photos), the ONNX Runtime predictor, INT8 quantization, bad
input."""
import importlib.util
import json
import logging

import numpy as np
import onnx
import pytest
import torch
import torchvision

from detectron2.modeling import build_model
from rtinst.engine import predictor as torch_predictor
from rtinst.engine.predictor import Predictor
from rtinst.export import (
    AnySizePipeline,
    FixedSizePipeline,
    ONNXPredictor,
    compare_instances,
    compare_outputs,
    export_onnx,
    quantize_onnx,
)
from rtinst.export import onnx_predictor
from tiny_models import TINY_BLITZMASK_OPTS, tiny_blitzmask_cfg
from tiny_models import EVERY_LEVEL_BOXES, batch_with_masks, train_on_batch
from payloads import code_running_pkl
from rect_datasets import hwc, write_rects_dataset
from instance_pairs import parity_on_coco_photos
from train_net_runner import ROOT

SIZE = 128


@pytest.fixture(scope="module")
def trained_model():
    """The tiny BlitzMask trained for 60 iterations on two synthetic images (distinct peaks)."""
    torch.manual_seed(0)
    model = build_model(tiny_blitzmask_cfg("MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.05"))
    batch = batch_with_masks(EVERY_LEVEL_BOXES, SIZE)
    train_on_batch(model, batch, iterations=60, lr=0.02)
    return model.eval(), batch


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    model, _ = trained_model
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "blitzmask.onnx", SIZE, SIZE,
                       input_format="RGB")


def _instances(model, rgb):
    """The PyTorch model's instances on an RGB (H, W, 3) array at its own size."""
    with torch.no_grad():
        return model([{"image": torch.from_numpy(rgb).permute(2, 0, 1).float()}])[0]["instances"]


def test_onnx_runtime_gives_pytorchs_instances(trained_model, exported):
    model, batch = trained_model
    predictor = ONNXPredictor(exported)
    for item in batch:
        image = hwc(item)
        parity = compare_instances(_instances(model, image),
                                   predictor(image[:, :, ::-1])["instances"])
        assert parity.num_instances > 0
        assert parity.ok(score_tol=1e-4, box_tol=1e-3, min_iou=0.99), parity


def test_pipeline_is_the_models_own_inference(trained_model):
    """The exported pipeline's outputs (masks as logits on the stride-4 grid) mapped back as
    the model maps its own give exactly what ``model(batched_inputs)`` returns."""
    model, batch = trained_model
    image = hwc(batch[1])
    with torch.no_grad():
        outputs = AnySizePipeline(model, SIZE, SIZE)(torch.from_numpy(image),
                                                     torch.tensor([SIZE, SIZE]))
    assert outputs[3].shape[1:] == (SIZE // 4, SIZE // 4)
    mapped = model.instances(*outputs, (SIZE, SIZE), (SIZE, SIZE))
    out = _instances(model, image)
    assert torch.equal(out.scores, mapped.scores)
    assert torch.equal(out.pred_classes, mapped.pred_classes)
    assert torch.equal(out.pred_boxes.tensor, mapped.pred_boxes.tensor)
    assert torch.equal(out.pred_masks, mapped.pred_masks)
    assert len(out) >= 4  # the trained model finds the rectangles


def test_onnx_runtime_gives_the_predictors_instances_on_coco_photos(trained_model, tmp_path):
    """Real photos resized as the Predictor resizes them (shorter side 240, longer <= 320) into
    a graph of any size: the same instances, masks resized once from the grid by both."""
    model, _ = trained_model
    cfg = tiny_blitzmask_cfg("MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.05",
                             "INPUT.MIN_SIZE_TEST", "240", "INPUT.MAX_SIZE_TEST", "320")
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    torch.save({"model": model.state_dict()}, cfg.MODEL.WEIGHTS)
    path = export_onnx(model, tmp_path / "blitzmask.onnx", 320, 320, cfg.INPUT.FORMAT,
                       resize=(240, 320))
    counts = []
    for photo, expected, _, parity in parity_on_coco_photos(Predictor(cfg), ONNXPredictor(path)):
        assert parity.ok(), (photo.shape, parity)
        counts.append(len(expected))
    assert min(counts) > 0, counts  # the model finds something in every photo


def test_parity_pairs_instances_whose_equal_scores_come_out_in_either_order():
    boxes = torch.tensor([[0.0, 0, 4, 4], [8, 8, 12, 12]])
    masks = torch.zeros(2, 16, 16, dtype=torch.uint8)
    masks[0, :4, :4], masks[1, 8:12, 8:12] = 1, 1
    expected = (boxes, torch.tensor([0.3, 0.3]), torch.tensor([1, 1]), masks)
    swapped = [x.flip(0).numpy() for x in expected]
    parity = compare_outputs(expected, swapped)
    assert parity.ok() and parity.min_mask_iou == 1.0 and parity.max_box_diff == 0
    other_class = [x.numpy().copy() for x in expected]
    other_class[2][0] = 2
    assert not compare_outputs(expected, other_class).ok()
    fewer = [x[:1].numpy() for x in expected]
    assert not compare_outputs(expected, fewer).same_instances


def test_no_detections_in_the_letterbox_padding(exported, trained_model):
    _, batch = trained_model
    predictor = ONNXPredictor(exported)
    wide = np.full((SIZE // 2, SIZE, 3), 20, np.uint8)  # letterboxed into the top half
    wide[8:40, 40:80, 0] = 230
    out = predictor(wide[:, :, ::-1])["instances"]
    boxes, _, _, _ = predictor.run(*predictor.prepare(wide[:, :, ::-1]))
    assert out.image_size == (SIZE // 2, SIZE)
    centres_y = (boxes[:, 1] + boxes[:, 3]) / 2
    assert (centres_y < SIZE // 2 + 4).all()  # peaks (box centres +- a cell) in the picture


def test_whole_pipeline_is_inside_the_graph(exported):
    graph = onnx.load(str(exported))
    ops = {node.op_type for node in graph.graph.node}
    assert {"MaxPool", "TopK", "MatMul", "Greater"} <= ops  # peaks, Eq. 1, > threshold
    assert not ops & {"ConvTranspose", "DeformConv"}
    assert [o.name for o in graph.graph.output] == ["boxes", "scores", "classes", "masks"]
    assert [i.name for i in graph.graph.input] == ["image", "image_size"]
    height, width = (graph.graph.input[0].type.tensor_type.shape.dim[i].dim_param for i in (0, 1))
    assert (height, width) == ("height", "width")  # any size: padded as Detectron2 pads
    props = {p.key: p.value for p in graph.metadata_props}
    assert props == {"input_format": "RGB", "input_size": f"{SIZE},{SIZE}",
                     "pad_value": "124,116,104",  # MODEL.PIXEL_MEAN, rounded
                     "picture_fit": "letterbox", "mask_format": "grid", "mask_stride": "4",
                     "mask_threshold": "0.5", "mask_crop_to_boxes": "True",
                     "size_divisibility": "32"}


def test_predictor_maps_instances_back_to_the_original_image(exported, trained_model):
    _, batch = trained_model
    rgb = hwc(batch[1])
    # the same scene at twice the size, non-square (pad at the bottom), in BGR as cv2 reads it
    big = np.full((2 * SIZE, 3 * SIZE, 3), 20, np.uint8)
    big[:, : 2 * SIZE] = rgb.repeat(2, axis=0).repeat(2, axis=1)
    out = ONNXPredictor(exported)(big[:, :, ::-1])["instances"]
    assert out.image_size == (2 * SIZE, 3 * SIZE)
    assert out.pred_masks.shape == (len(out), 2 * SIZE, 3 * SIZE)
    assert len(out) > 0
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 2] <= 3 * SIZE).all() and (boxes[:, 3] <= 2 * SIZE).all()


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_quantization_writes_a_smaller_model_that_runs(exported, trained_model, mode,
                                                            tmp_path):
    _, batch = trained_model
    images = [hwc(item)[:, :, ::-1] for item in batch]  # BGR
    target = quantize_onnx(exported, tmp_path / f"{mode}.onnx", mode, images)
    ops = {node.op_type for node in onnx.load(str(target)).graph.node}
    assert ops & {"ConvInteger", "QLinearConv", "DequantizeLinear"}
    assert target.stat().st_size < exported.stat().st_size
    outputs = ONNXPredictor(target).run(hwc(batch[1]))
    assert outputs[3].shape[1:] == (SIZE // 4, SIZE // 4)  # mask logits on the stride-4 grid


def test_bad_input_is_named(trained_model, tmp_path):
    model, _ = trained_model
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        ONNXPredictor(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="size divisibility 32"):
        export_onnx(model, tmp_path / "x.onnx", 100, 128)
    with pytest.raises(TypeError, match="predict_maps"):
        FixedSizePipeline(torch.nn.Linear(2, 2), SIZE, SIZE)
    with pytest.raises(ValueError, match="static quantization needs calibration images"):
        quantize_onnx(tmp_path / "x.onnx", tmp_path / "y.onnx", "static")


def test_grid_masks_without_their_metadata_are_refused_naming_the_file(exported, tmp_path):
    graph = onnx.load(str(exported))
    props = {p.key: p.value for p in graph.metadata_props if p.key != "mask_stride"}
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(tmp_path / "no_stride.onnx"))
    with pytest.raises(ValueError, match=r"no_stride.onnx: grid masks without \['mask_stride'\]"):
        ONNXPredictor(tmp_path / "no_stride.onnx")


def _export_tool():
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "tools/export_onnx.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_export_tool_checks_parity_on_a_trained_checkpoint(trained_model, tmp_path, caplog):
    tool = _export_tool()
    model, batch = trained_model
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    images, annotations = write_rects_dataset(tmp_path, batch)
    output = tmp_path / "out" / "model.onnx"
    caplog.set_level(logging.INFO, logger="rtinst.export")
    code = tool.main(["--config-file", str(ROOT / "configs/BlitzMask/MNV2_shapes.yaml"),
                      "--output", str(output), "--size", str(SIZE), str(SIZE),
                      "--images", str(images), "--quantize", "dynamic", "--time", "1",
                      "--dataset", f"rects_export_test={annotations},{images}",
                      "--evaluate", "rects_export_test",
                      "--opts", *TINY_BLITZMASK_OPTS, "MODEL.WEIGHTS", str(weights),
                      "INPUT.MIN_SIZE_TEST", str(SIZE), "INPUT.MAX_SIZE_TEST", str(SIZE)])
    assert code == 0
    assert output.is_file() and output.with_suffix(".int8.onnx").is_file()
    assert "fp32: graph alone" in caplog.text and "int8: graph alone" in caplog.text
    assert "graph input: any size, multiples of 32 (traced at 128x128)" in caplog.text
    assert "parity with PyTorch on 2 images (Predictor)" in caplog.text
    table = json.loads(caplog.text.split("AP on rects_export_test: ")[1].splitlines()[0])
    assert set(table) == {"fp32", "int8", "pytorch"}
    assert abs(table["fp32"]["segm"] - table["pytorch"]["segm"]) < 0.5  # the same model
    assert all(set(row) == {"bbox", "segm", "s_per_image"} for row in table.values())


# the shapes config with a small FPN and head (its six classes from shapes_train/val)
SMALL_BLITZMASK_OPTS = ("MODEL.SEPARABLE_FPN.OUT_CHANNELS", "32", "MODEL.BLITZMASK.HEAD_CHANNELS",
                        "32")


def _run_export_tool(tmp_path, *arguments, opts=()):
    """tools/export_onnx.py's main in this process: (SystemExit message or None, output path)."""
    output = tmp_path / "out" / "model.onnx"
    try:
        _export_tool().main(["--config-file", str(ROOT / "configs/BlitzMask/MNV2_shapes.yaml"),
                             "--output", str(output), "--size", "64", "64", *arguments,
                             "--opts", *SMALL_BLITZMASK_OPTS, *opts])
    except SystemExit as e:
        return str(e.code), output
    return None, output


def test_export_tool_refuses_a_pickle_that_runs_code(tmp_path):
    weights, marker = code_running_pkl(tmp_path)
    error, output = _run_export_tool(tmp_path, opts=("MODEL.WEIGHTS", str(weights)))
    assert error.startswith("export_onnx.py: error:") and "evil.pkl" in error
    assert not marker.exists() and not output.exists()


def test_export_tool_refuses_another_models_checkpoint(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    error, output = _run_export_tool(tmp_path, opts=("MODEL.WEIGHTS", str(weights)))
    assert error.startswith("export_onnx.py: error:") and "resnet18.pth" in error
    assert not output.exists()


def test_export_tool_refuses_a_model_without_export_before_loading_anything(tmp_path):
    weights = tmp_path / "no_such_checkpoint.pth"  # never opened: the refusal comes first
    output = tmp_path / "out" / "model.onnx"
    with pytest.raises(SystemExit) as refusal:
        _export_tool().main(["--config-file", str(ROOT / "configs/Mask-RCNN/MNV2_FPN_shapes.yaml"),
                             "--output", str(output), "--evaluate", "no_such_dataset",
                             "--opts", "MODEL.WEIGHTS", str(weights)])
    message = str(refusal.value.code)
    assert "no export pipeline 'GeneralizedRCNN' is registered" in message, message
    assert "MODEL.META_ARCHITECTURE" in message and not output.exists()


def test_export_tool_checks_the_evaluation_dataset_before_exporting(trained_model, tmp_path):
    error, output = _run_export_tool(tmp_path, "--evaluate", "no_such_dataset")
    assert "--evaluate no_such_dataset: not a registered dataset" in error
    assert "shapes_val" in error and not output.exists()
    _, batch = trained_model
    images, annotations = write_rects_dataset(tmp_path, batch, with_annotations=False)
    error, output = _run_export_tool(
        tmp_path, "--dataset", f"unannotated_export_test={annotations},{images}",
        "--evaluate", "unannotated_export_test", opts=TINY_BLITZMASK_OPTS[:2])
    assert "--evaluate unannotated_export_test: the dataset has no annotations" in error
    assert not output.exists()


def test_onnx_predictor_checks_images_as_the_pytorch_predictor_does(exported):
    assert onnx_predictor.check_image is torch_predictor.check_image  # one validation function
    predictor = ONNXPredictor(exported)
    for image, message in [
        (np.full((SIZE, SIZE, 3), np.nan, np.float32), "non-finite values"),
        (np.zeros((0, 0, 3), np.uint8), "empty: 0x0"),
        (np.zeros((SIZE, SIZE), np.uint8), "convert it to 3 channels"),
        (np.zeros((SIZE, SIZE, 3), np.float32), "must be uint8"),
    ]:
        with pytest.raises(ValueError, match=message):
            predictor(image)
        with pytest.raises(ValueError, match=message):
            predictor.prepare(image)


def test_onnx_predictor_bounds_the_output_size(exported, trained_model, caplog):
    _, batch = trained_model
    big = np.ascontiguousarray(hwc(batch[1]).repeat(2, axis=0).repeat(3, axis=1)[:, :, ::-1])
    predictor = ONNXPredictor(exported, max_output_pixels=SIZE * SIZE)
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        out = predictor(big)["instances"]
        height, width = out.image_size
        assert height * width <= SIZE * SIZE and abs(width / height - 1.5) < 0.02
        assert out.pred_masks.shape[1:] == (height, width) and len(out) > 0
        assert (out.pred_boxes.tensor[:, 2] <= width).all()
    assert caplog.text.count("is over max_output_pixels") == 1
    full = ONNXPredictor(exported, max_output_pixels=None)(big)["instances"]
    assert full.image_size == (2 * SIZE, 3 * SIZE)
    assert torch.allclose(out.pred_boxes.tensor * (3 * SIZE / width), full.pred_boxes.tensor,
                          rtol=0.02, atol=1.0)


