"""ONNX export of BlitzMask's whole pipeline: parity with PyTorch on trained weights, the
ONNX Runtime predictor, INT8 quantization, bad input."""
import importlib.util
import logging

import cv2
import numpy as np
import onnx
import pytest
import torch

from detectron2.modeling import build_model
from rtinst.export import (
    FixedSizePipeline,
    ONNXPredictor,
    compare_outputs,
    export_onnx,
    quantize_onnx,
)
from tiny_models import TINY_BLITZMASK_OPTS, tiny_blitzmask_cfg
from tiny_models import EVERY_LEVEL_BOXES, batch_with_masks
from train_net_runner import ROOT

SIZE = 128


@pytest.fixture(scope="module")
def trained_model():
    """The tiny BlitzMask trained for 60 iterations on two synthetic images (distinct peaks)."""
    torch.manual_seed(0)
    model = build_model(tiny_blitzmask_cfg("MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.05"))
    batch = batch_with_masks(EVERY_LEVEL_BOXES, SIZE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(60):
        losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return model.eval(), batch


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    model, _ = trained_model
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "blitzmask.onnx", SIZE, SIZE,
                       input_format="RGB")


def _hwc(batch_item):
    return batch_item["image"].permute(1, 2, 0).round().to(torch.uint8).numpy()


def test_onnx_runtime_gives_pytorchs_instances(trained_model, exported):
    model, batch = trained_model
    predictor = ONNXPredictor(exported)
    pipeline = FixedSizePipeline(model, SIZE, SIZE)
    for item in batch:
        image = _hwc(item)
        with torch.no_grad():
            expected = pipeline(torch.from_numpy(image))
        parity = compare_outputs(expected, predictor.run(image))
        assert parity.num_instances > 0
        assert parity.ok(score_tol=1e-4, min_iou=0.99), parity
        assert parity.max_box_diff < 1e-3


def test_pipeline_is_the_models_own_inference(trained_model):
    """What is exported is what ``model(batched_inputs)`` returns at the same size."""
    model, batch = trained_model
    image = _hwc(batch[1])
    with torch.no_grad():
        boxes, scores, classes, masks = FixedSizePipeline(model, SIZE, SIZE)(
            torch.from_numpy(image))
        out = model([{"image": torch.from_numpy(image).permute(2, 0, 1).float()}])[0]["instances"]
    assert torch.equal(out.scores, scores) and torch.equal(out.pred_classes, classes)
    assert torch.equal(out.pred_masks, masks.bool())
    assert len(out) >= 4  # the trained model finds the rectangles


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
    assert {"MaxPool", "TopK", "MatMul", "Resize", "Greater"} <= ops  # peaks, Eq. 1, resize, >
    assert not ops & {"ConvTranspose", "DeformConv"}
    assert [o.name for o in graph.graph.output] == ["boxes", "scores", "classes", "masks"]
    assert [i.name for i in graph.graph.input] == ["image", "image_size"]
    props = {p.key: p.value for p in graph.metadata_props}
    assert props == {"input_format": "RGB", "input_size": f"{SIZE},{SIZE}",
                     "pad_value": "124,116,104"}  # MODEL.PIXEL_MEAN, rounded


def test_predictor_maps_instances_back_to_the_original_image(exported, trained_model):
    _, batch = trained_model
    rgb = _hwc(batch[1])
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
    images = [_hwc(item)[:, :, ::-1] for item in batch]  # BGR
    target = quantize_onnx(exported, tmp_path / f"{mode}.onnx", mode, images)
    ops = {node.op_type for node in onnx.load(str(target)).graph.node}
    assert ops & {"ConvInteger", "QLinearConv", "DequantizeLinear"}
    assert target.stat().st_size < exported.stat().st_size
    outputs = ONNXPredictor(target).run(_hwc(batch[1]))
    assert outputs[3].shape[1:] == (SIZE, SIZE)


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


def test_export_tool_checks_parity_on_a_trained_checkpoint(trained_model, tmp_path, caplog):
    spec = importlib.util.spec_from_file_location("export_onnx", ROOT / "tools/export_onnx.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    model, batch = trained_model
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    images = tmp_path / "images"
    images.mkdir()
    for i, item in enumerate(batch):
        cv2.imwrite(str(images / f"{i}.png"), _hwc(item)[:, :, ::-1])
    output = tmp_path / "out" / "model.onnx"
    caplog.set_level(logging.INFO, logger="rtinst.export")
    code = tool.main(["--config-file", str(ROOT / "configs/BlitzMask/MNV2_shapes.yaml"),
                      "--output", str(output), "--size", str(SIZE), str(SIZE),
                      "--images", str(images), "--quantize", "dynamic", "--time", "1",
                      "--opts", *TINY_BLITZMASK_OPTS, "MODEL.WEIGHTS", str(weights)])
    assert code == 0
    assert output.is_file() and output.with_suffix(".int8.onnx").is_file()
    assert "fp32: graph alone" in caplog.text and "int8: graph alone" in caplog.text
