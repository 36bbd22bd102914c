"""ONNX export of the FCOS family (FCOS, BlendMask and its RT head, CenterMask): preprocessing,
network, FCOS decoding, class-aware NMS, top-k and each mask stage inside one graph of any input
size, giving the ``Predictor``'s instances on real COCO photos of several sizes and aspect
ratios; INT8 keeps the AP."""
import cv2
import numpy as np
import onnx
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from rtinst.engine.predictor import Predictor, load_weights
from rtinst.export import (
    ONNXPredictor,
    evaluate_onnx,
    export_onnx,
    quantize_onnx,
)
from rect_datasets import write_rects_dataset
from instance_pairs import parity_on_coco_photos
from tiny_models import (
    batch_with_masks,
    tiny_blendmask_cfg,
    tiny_centermask_cfg,
    tiny_fcos_cfg,
    train_on_batch,
)

pytestmark = pytest.mark.slow

# the Predictor's resize (shorter side 240, longer at most 320): 640 x 480 photos go in at 240 x 320
TEST_SIZES = ("INPUT.MIN_SIZE_TEST", "240", "INPUT.MAX_SIZE_TEST", "320",
              "MODEL.FCOS.INFERENCE_TH_TEST", "0.05")
# BlendMask-RT's head (Sec. 4.2): one tower shared by classes and boxes, BN, P3-P5 only
RT_HEAD = ("MODEL.FCOS.TOP_LEVELS", "0", "MODEL.FCOS.IN_FEATURES", "['p3', 'p4', 'p5']",
           "MODEL.FCOS.FPN_STRIDES", "[8, 16, 32]", "MODEL.FCOS.SIZES_OF_INTEREST", "[16, 32]",
           "MODEL.FCOS.NUM_SHARE_CONVS", "1", "MODEL.FCOS.NUM_CLS_CONVS", "0",
           "MODEL.FCOS.NUM_BOX_CONVS", "0", "MODEL.FCOS.NORM", "BN")
METHODS = {  # name: (config, extra options, learning rate that trains it in 40 steps)
    "fcos": (tiny_fcos_cfg, (), 0.01),
    "blendmask": (tiny_blendmask_cfg, (), 0.01),
    "blendmask_rt": (tiny_blendmask_cfg, RT_HEAD, 0.01),
    "centermask": (tiny_centermask_cfg, (), 0.003),
}
# INT8 on the two mask stages (FCOS's graph is inside both, BlendMask-RT's blender BlendMask's),
# to keep CI's time
INT8_CHECKED = ("blendmask", "centermask")
GRAPH_OPS = {"NonMaxSuppression", "TopK"}  # decoding and NMS inside the graph
MASK_OPS = {"fcos": set(), "blendmask": {"RoiAlign"}, "blendmask_rt": {"RoiAlign"},
            "centermask": {"RoiAlign"}}


@pytest.fixture(scope="module", params=sorted(METHODS))
def exported(request, tmp_path_factory):
    """(name, cfg, ONNX path): the tiny model trained for 40 steps on two synthetic images,
    saved, and exported with the Predictor's resize."""
    name = request.param
    make_cfg, opts, lr = METHODS[name]
    cfg = make_cfg()
    cfg.merge_from_list([*TEST_SIZES, *opts])
    torch.manual_seed(0)
    with EventStorage():  # CenterMask's RoI sampling logs to it
        model = train_on_batch(build_model(cfg), batch_with_masks(), iterations=40, lr=lr)
    folder = tmp_path_factory.mktemp(name)
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    cfg.MODEL.WEIGHTS = str(folder / "model.pth")
    path = export_onnx(model.eval(), folder / f"{name}.onnx", 320, 320, cfg.INPUT.FORMAT,
                       resize=(240, 320))
    return name, cfg, path


def test_onnx_runtime_gives_the_predictors_instances_on_coco_photos(exported):
    name, cfg, path = exported
    counts = []
    for photo, expected, actual, parity in parity_on_coco_photos(Predictor(cfg),
                                                                 ONNXPredictor(path)):
        assert set(expected.get_fields()) >= set(actual.get_fields()), name
        assert (parity.max_score_diff <= 1e-3 and parity.max_box_diff <= 1.0
                and parity.min_mask_iou >= 0.98), (name, photo.shape, parity)
        assert not [s for s in parity.unmatched_scores if s > 0.3], (name, photo.shape, parity)
        if actual.has("mask_scores"):  # CenterMask's mask scoring rides along
            assert np.allclose(np.sort(actual.mask_scores), np.sort(expected.mask_scores),
                               atol=1e-3)
        counts.append(len(expected))
    assert min(counts) > 0, counts  # the trained model finds objects in every photo


def op_types(graph):
    """The op types of ``graph`` and of its subgraphs (the NMS sits in an If: none on no box)."""
    return {node.op_type for node in graph.node} | {
        op for node in graph.node for attribute in node.attribute if attribute.g.node
        for op in op_types(attribute.g)}


def test_decoding_nms_and_mask_stage_are_inside_the_graph(exported):
    name, _, path = exported
    graph = onnx.load(str(path)).graph
    assert GRAPH_OPS | MASK_OPS[name] <= op_types(graph), sorted(op_types(graph))
    outputs = [output.name for output in graph.output]
    assert outputs[:3] == ["boxes", "scores", "classes"]
    assert ("masks" in outputs) == (name != "fcos")
    height, width = (graph.input[0].type.tensor_type.shape.dim[i].dim_param for i in (0, 1))
    assert (height, width) == ("height", "width")  # any size: padded as Detectron2 pads


def test_graph_of_a_model_that_finds_nothing_runs(exported, tmp_path):
    """No candidate above the threshold: no NMS, no RoI; empty outputs of the right shapes."""
    name, cfg, _ = exported
    cfg = cfg.clone()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 1.0  # no probability is above it
    path = export_onnx(build_model(cfg).eval(), tmp_path / f"{name}.onnx", 320, 320,
                       resize=(240, 320))
    instances = ONNXPredictor(path)(np.zeros((200, 300, 3), np.uint8))["instances"]
    assert len(instances) == 0 and instances.image_size == (200, 300)
    if instances.has("pred_masks"):
        assert instances.pred_masks.shape == (0, 200, 300)


def test_int8_keeps_the_ap_of_fp32(exported, tmp_path):
    if exported[0] not in INT8_CHECKED:
        pytest.skip(f"{exported[0]}: its graph's parts are checked in INT8 by {INT8_CHECKED}")
    """Static INT8 calibrated on the images themselves: box and mask AP on the two synthetic
    images the model learnt (at their own 128 px) near FP32's. Nine objects and two calibration
    images make AP coarse (one box crossing one of COCO's ten IoU thresholds moves it by ~1.1;
    INT8 minus FP32 box / mask AP measured: BlendMask +2.5 / +1.7, CenterMask -1.7 / -7.7 with
    7-bit weights, +3.3 / +4.1 and -2.7 / -2.8 with 8-bit ones), so the bound here is 10: it
    catches a broken quantization, not a change of one AP, which is measured on the
    shapes-trained models (benchmarks/int8_variants_shapes_2026-12-08.json)."""
    name, cfg, _ = exported
    model = build_model(cfg).eval()
    load_weights(model, cfg.MODEL.WEIGHTS)
    path = export_onnx(model, tmp_path / f"{name}.onnx", 128, 128, cfg.INPUT.FORMAT,
                       resize=(128, 128))
    dataset = f"rects_int8_{name}"
    images, annotations = write_rects_dataset(tmp_path, batch_with_masks(), cfg.INPUT.FORMAT)
    register_coco_instances(dataset, {}, str(annotations), str(images))
    try:
        photos = [cv2.imread(str(p)) for p in sorted(images.glob("*.png"))]
        int8 = quantize_onnx(path, tmp_path / "model.int8.onnx", "static", photos)
        fp32_ap = evaluate_onnx(ONNXPredictor(path, max_output_pixels=None), dataset)
        int8_ap = evaluate_onnx(ONNXPredictor(int8, max_output_pixels=None), dataset)
    finally:
        DatasetCatalog.remove(dataset)
        MetadataCatalog.remove(dataset)
    for task in fp32_ap:
        assert fp32_ap[task]["AP"] > 20, (name, fp32_ap)  # the model learnt the rectangles
        assert abs(int8_ap[task]["AP"] - fp32_ap[task]["AP"]) <= 10.0, (name, fp32_ap, int8_ap)
