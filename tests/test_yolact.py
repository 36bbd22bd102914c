"""YOLACT / YOLACT++ (projects/YOLACT): anchors, box coding, Fast NMS, mask assembly and crop,
deformable blocks, mask re-scoring, the model's outputs, checkpoint conversion and training."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from detectron2.layers import ModulatedDeformConv
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import DeformBottleneckBlock
from detectron2.modeling.box_regression import Box2BoxTransform
from rtinst.checkpoint import SafeCheckpointer
from rtinst.engine import load_config
from rtinst.errors import CheckpointError
from rtinst.modeling.layers import assemble_masks, crop_to_boxes
from shared_files import KEY_LISTS, require_shared
from tiny_models import batch_with_masks, tiny_yolact_cfg
from train_net_runner import SHORT_SHAPES_RUN, losses_not_falling, run_train_net
from yolact import convert_reference_state_dict, cross_class_fast_nms, fast_nms, standard_nms
from yolact.anchors import YOLACTAnchors
from yolact.fpn import deformable_block_indices
from yolact.inference import YOLACTInference
from yolact.mask_rescoring import MaskIoUHead

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs/YOLACT"
FIXTURES = Path(__file__).resolve().parent / "fixtures/yolact"
LEVELS_550 = [(69, 69), (35, 35), (18, 18), (9, 9), (5, 5)]
SCALES = [[24], [48], [96], [192], [384]]


# --- anchors (Sec. 6) ---------------------------------------------------------------------------

def test_square_anchors_at_550_by_hand():
    anchors = YOLACTAnchors(SCALES, [[1, 0.5, 2]], 550, square=True)
    boxes = anchors(LEVELS_550, (550, 550))
    assert boxes.shape == (3 * sum(h * w for h, w in LEVELS_550), 4)
    centre = 0.5 / 69 * 550  # first P3 cell
    side = 24 * math.sqrt(0.5)  # ratio 1/2, made square: as wide as the non-square one
    expected = [[centre - 12, centre - 12, centre + 12, centre + 12],
                [centre - side / 2, centre - side / 2, centre + side / 2, centre + side / 2]]
    torch.testing.assert_close(boxes[:2], torch.tensor(expected), atol=1e-4, rtol=0)
    # second location of P3: one cell to the right (row-major), same sizes
    torch.testing.assert_close(boxes[3, 0::2] - boxes[0, 0::2], torch.full((2,), 550 / 69))
    # last anchor: last P7 cell (centre 4.5 / 5 * 550 = 495), scale 384, ratio 2 made square
    side = 384 * math.sqrt(2)
    torch.testing.assert_close(boxes[-1], torch.tensor([495 - side / 2] * 2 + [495 + side / 2] * 2))


def test_non_square_anchors_three_scales_by_hand():
    scales = [[s * 2 ** (j / 3) for j in range(3)] for s in (24, 48, 96, 192, 384)]
    anchors = YOLACTAnchors(scales, [[1, 0.5, 2]], 550, square=False)
    boxes = anchors(LEVELS_550, (550, 550))
    assert anchors.num_anchors_per_location() == [9] * 5
    assert boxes.shape == (9 * 6416, 4)
    widths, heights = boxes[:9, 2] - boxes[:9, 0], boxes[:9, 3] - boxes[:9, 1]
    # order: scale-major, then ratio 1, 1/2, 2; w = s sqrt(a), h = s / sqrt(a)
    expected_w = [s * math.sqrt(a) for s in scales[0] for a in (1, 0.5, 2)]
    expected_h = [s / math.sqrt(a) for s in scales[0] for a in (1, 0.5, 2)]
    torch.testing.assert_close(widths, torch.tensor(expected_w), atol=1e-4, rtol=0)
    torch.testing.assert_close(heights, torch.tensor(expected_h), atol=1e-4, rtol=0)
    assert heights[1].item() == pytest.approx(2 * widths[1].item(), abs=1e-4)  # 1/2: twice as tall


def test_anchors_follow_the_input_size():
    """On a 275 x 1100 input the widths scale by 2 and the heights by 1/2 (relative boxes)."""
    anchors = YOLACTAnchors(SCALES, [[1]], 550, square=False)
    boxes = anchors([(35, 138), (18, 69), (9, 35), (5, 18), (3, 9)], (275, 1100))
    assert (boxes[0, 2] - boxes[0, 0]).item() == pytest.approx(48, abs=1e-4)
    assert (boxes[0, 3] - boxes[0, 1]).item() == pytest.approx(12, abs=1e-4)


# --- box coding -------------------------------------------------------------------------------

def test_box_coding_is_ssds_with_variances_and_round_trips():
    box2box = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    anchor = torch.tensor([[90.0, 45.0, 110.0, 55.0]])  # centre (100, 50), 20 x 10
    gt = torch.tensor([[89.0, 44.0, 119.0, 54.0]])  # centre (104, 49), 30 x 10
    deltas = box2box.get_deltas(anchor, gt)
    # SSD: ((cx - pcx) / (0.1 pw), (cy - pcy) / (0.1 ph), log(w / pw) / 0.2, log(h / ph) / 0.2)
    torch.testing.assert_close(deltas, torch.tensor([[2.0, -1.0, math.log(1.5) / 0.2, 0.0]]))
    torch.testing.assert_close(box2box.apply_deltas(deltas, anchor), gt)


# --- Fast NMS (Sec. 3.4) ----------------------------------------------------------------------

# A, B, C in a row: IoU(A, B) = IoU(B, C) = 0.6, IoU(A, C) = 1/3
CHAIN = torch.tensor([[0.0, 0, 10, 10], [2.5, 0, 12.5, 10], [5.0, 0, 15, 10]])


def test_fast_nms_suppresses_with_an_already_suppressed_box():
    """Standard NMS keeps A and C (B, suppressed by A, no longer suppresses C); Fast NMS also
    drops C, whose highest IoU with a better box (B) is over the threshold."""
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    kept, classes, kept_scores = fast_nms(CHAIN, scores, 0.5)
    assert kept.tolist() == [0] and classes.tolist() == [0]
    kept, _, kept_scores = standard_nms(CHAIN, scores, 0.5)
    assert kept.tolist() == [0, 2]
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.7]))


def test_fast_nms_per_class_top_k_and_detection_limit():
    scores = torch.tensor([[0.9, 0.8, 0.7],  # class 0: A only
                           [0.1, 0.2, 0.95]])  # class 1: C, then B (0.6 with C: out), then A
    kept, classes, kept_scores = fast_nms(CHAIN, scores, 0.5)  # (A: 0.6 with B, out too)
    assert list(zip(kept.tolist(), classes.tolist())) == [(2, 1), (0, 0)]
    torch.testing.assert_close(kept_scores, torch.tensor([0.95, 0.9]))
    kept, classes, _ = fast_nms(CHAIN, scores, 0.65)  # every pair below 0.65: all six
    assert len(kept) == 6
    # top_k 1: only each class's best enters; max_detections 1: the best overall
    kept, classes, _ = fast_nms(CHAIN, scores, 0.5, top_k=1)
    assert sorted(zip(kept.tolist(), classes.tolist())) == [(0, 0), (2, 1)]
    kept, classes, _ = fast_nms(CHAIN, scores, 0.5, max_detections=1)
    assert kept.tolist() == [2] and classes.tolist() == [1]


def _per_class_fast_nms(boxes, scores, iou_threshold, top_k, max_detections):
    """The paper's formulation, literally: one (top_k, top_k) IoU matrix per class."""
    from torchvision.ops import box_iou

    scores, indices = scores.sort(dim=1, descending=True)
    indices, scores = indices[:, :top_k], scores[:, :top_k]
    kept = []
    for c in range(scores.shape[0]):
        iou = box_iou(boxes[indices[c]], boxes[indices[c]]).triu(diagonal=1)
        keep = iou.amax(dim=0) <= iou_threshold
        kept += [(s, i, c) for s, i in zip(scores[c][keep].tolist(), indices[c][keep].tolist())]
    kept.sort(key=lambda t: -t[0])
    return kept[:max_detections]


@pytest.mark.parametrize("seed,spread,max_detections", [
    (0, 100, 60), (1, 100, 5), (2, 300, 20), (3, 100, 60), (4, 100, 5),
    (5, 2, 20),  # every box on top of the others: the pruned matrices keep too few, fall back
])
def test_fast_nms_equals_the_per_class_matrices(seed, spread, max_detections):
    """The batched matrices (first restricted to the best-scoring detections) give what one
    matrix per class gives."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(300, 2, generator=g) * spread
    sizes = 5 + torch.rand(300, 2, generator=g) * 40
    boxes = torch.cat([centres, centres + sizes], dim=1)
    scores = torch.rand(7, 300, generator=g) ** 3
    kept, classes, kept_scores = fast_nms(boxes, scores, 0.5, 50, max_detections)
    expected = _per_class_fast_nms(boxes, scores, 0.5, 50, max_detections)
    assert list(zip(kept_scores.tolist(), kept.tolist(), classes.tolist())) == expected


@pytest.mark.parametrize("nms", [fast_nms, cross_class_fast_nms, standard_nms])
def test_nms_of_no_candidates_is_empty(nms):
    kept, classes, scores = nms(torch.zeros(0, 4), torch.zeros(3, 0))
    assert kept.shape == classes.shape == scores.shape == (0,)


def test_an_image_without_candidates_gives_no_instances():
    model = build_model(tiny_yolact_cfg("MODEL.YOLACT.SCORE_THRESH", "1.0")).eval()
    with torch.no_grad():
        instances = model([{"image": torch.zeros(3, 64, 80, dtype=torch.uint8)}])[0]["instances"]
    assert len(instances) == 0 and instances.pred_masks.shape == (0, 64, 80)


def test_cross_class_fast_nms_uses_each_boxs_best_class():
    scores = torch.tensor([[0.9, 0.1, 0.7], [0.1, 0.8, 0.2]])  # best: A/0, B/1, C/0
    kept, classes, _ = cross_class_fast_nms(CHAIN, scores, 0.5)
    assert kept.tolist() == [0] and classes.tolist() == [0]  # B (other class) suppressed C
    kept, classes, _ = cross_class_fast_nms(CHAIN, scores, 0.65)
    assert kept.tolist() == [0, 1, 2] and classes.tolist() == [0, 1, 0]


# --- masks (Sec. 3.3) ---------------------------------------------------------------------------

def test_assembly_and_yolact_crop_on_hand_made_prototypes():
    prototypes = torch.zeros(2, 4, 4)
    prototypes[0, :, :2] = 1.0  # left half
    prototypes[1, :2, :] = 1.0  # top half
    coefficients = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    logits = assemble_masks(coefficients, prototypes)
    assert logits[0].tolist() == [[1, 1, -1, -1], [1, 1, -1, -1], [2, 2, 0, 0], [2, 2, 0, 0]]
    assert logits[1].tolist() == [[1, 1, .5, .5], [1, 1, .5, .5], [.5, .5, 0, 0], [.5, .5, 0, 0]]
    ones = torch.ones(1, 4, 4)
    box = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    # YOLACT's crop, padding 1: indices i with 1 - 1 <= i < 2 + 1, i.e. 0, 1, 2
    padded = crop_to_boxes(ones, box, padding=1.0)[0]
    assert padded.tolist() == [[1, 1, 1, 0]] * 3 + [[0, 0, 0, 0]]
    # without padding: 1 <= i < 2, only index 1; the centre rule: centre 1.5 in [1, 2], index 1
    assert crop_to_boxes(ones, box, padding=0.0)[0].nonzero().tolist() == [[1, 1]]
    assert crop_to_boxes(ones, box)[0].nonzero().tolist() == [[1, 1]]


# --- YOLACT++: deformable blocks and mask re-scoring ------------------------------------------

def test_modulated_deformable_conv_with_zero_offsets_and_unit_mask_is_the_plain_conv():
    torch.manual_seed(0)
    conv = ModulatedDeformConv(4, 6, 3, padding=1, bias=True)
    x = torch.randn(2, 4, 9, 7)
    offset = torch.zeros(2, 18, 9, 7)
    plain = F.conv2d(x, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(conv(x, offset, torch.ones(2, 9, 9, 7)), plain,
                               atol=1e-5, rtol=1e-5)
    # a block's zero-initialised offset branch gives sigmoid(0) = 1/2 modulation: half the conv
    half = conv(x, offset, torch.full((2, 9, 9, 7), 0.5))
    expected = 0.5 * F.conv2d(x, conv.weight, padding=1) + conv.bias[:, None, None]
    torch.testing.assert_close(half, expected, atol=1e-5, rtol=1e-5)


def test_deformable_blocks_every_third_block_of_c3_c5_for_r101():
    assert deformable_block_indices(4, 3) == [0, 3]
    assert deformable_block_indices(23, 3) == [0, 3, 6, 9, 12, 15, 18, 21]
    assert deformable_block_indices(3, 3) == [0]
    assert deformable_block_indices(6, 1) == list(range(6))
    cfg = load_config(str(CONFIGS / "yolact_plus_R_101_550.yaml"),
                      ["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"])
    resnet = build_model(cfg).backbone.bottom_up
    deformable = {name: [i for i, b in enumerate(getattr(resnet, name))
                         if isinstance(b, DeformBottleneckBlock)]
                  for name in ("res2", "res3", "res4", "res5")}
    assert deformable == {"res2": [], "res3": [0, 3], "res4": list(range(0, 23, 3)),
                          "res5": [0]}


class _FixedIoU(torch.nn.Module):
    """A stand-in mask-IoU head: the predicted IoU of a mask is its mean value (any class)."""

    def forward(self, masks):
        return masks.mean(dim=(1, 2, 3))[:, None].expand(-1, 3)


def _two_detections():
    """Two anchors far apart, both confidently class 1 (0.9 and 0.8), with prototypes making the
    first one's mask mostly empty and the second one's full."""
    anchors = torch.tensor([[0.0, 0, 16, 16], [16.0, 16, 32, 32]])
    logits = torch.tensor([[0.0, -5, math.log(9), -5], [0.0, -5, math.log(4), -5]])
    prototypes = torch.ones(1, 8, 8)
    coefficients = torch.tensor([[-0.1], [1.0]])
    return torch.zeros(2, 4), logits, coefficients * 10, prototypes, anchors


def test_mask_rescoring_reorders_detections_by_predicted_iou():
    inference = YOLACTInference(box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                                score_threshold=0.05)
    deltas, logits, coefficients, prototypes, anchors = _two_detections()
    args = (deltas, logits, coefficients, prototypes, anchors, (32, 32), (32, 32), (32, 32))
    # (as the reference, Fast NMS keeps each candidate's other classes too, at tiny scores)
    boxes, scores, classes, masks, confidences = inference(*args)
    assert boxes[:2, 0].tolist() == [0, 16]  # by class confidence: first anchor first
    boxes, scores, classes, masks, confidences = inference(*args, mask_iou_head=_FixedIoU())
    assert boxes[:2, 0].tolist() == [16, 0]  # the full mask's predicted IoU puts it first
    # the scores are confidence x predicted IoU at the detection's class
    probabilities = logits.softmax(-1)[:, 2]
    crop = crop_to_boxes(torch.sigmoid(assemble_masks(coefficients, prototypes)), anchors / 4,
                         padding=1.0)
    expected = probabilities * crop.mean(dim=(1, 2))
    torch.testing.assert_close(scores[:2], expected.flip(0))
    torch.testing.assert_close(confidences[:2], probabilities.flip(0))
    assert classes[:2].tolist() == [1, 1]


@pytest.mark.parametrize("clip, expected", [(True, [32.0, 0.0, 32.0, 10.0]),
                                             (False, [40.0, 0.0, 32.0, 10.0])])
def test_a_box_wholly_outside_is_clipped_or_left_inverted_as_the_reference(clip, expected):
    """MODEL.YOLACT.CLIP_BOXES: clipped to the image, or the reference's per-side clamp (x1, y1
    >= 0, x2 <= w, y2 <= h), which leaves a box right of a 32 px image inverted."""
    inference = YOLACTInference(box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
                                score_threshold=0.05, clip_boxes=clip)
    deltas, logits, coefficients, prototypes, _ = _two_detections()
    anchors = torch.tensor([[40.0, -4.0, 56.0, 10.0], [40.0, -4.0, 56.0, 10.0]])
    boxes, *_ = inference(deltas, logits, coefficients, prototypes, anchors, (32, 32), (32, 32),
                          (32, 32))
    assert boxes[0].tolist() == expected


def test_mask_iou_head_on_prototypes_of_any_size():
    head = MaskIoUHead(num_classes=80)
    assert head(torch.rand(3, 1, 138, 138)).shape == (3, 80)
    assert head(torch.zeros(0, 1, 138, 138)).shape == (0, 80)
    # below 63 px five unpadded stride-2 convs leave nothing: the masks are zero-padded
    masks = torch.rand(2, 1, 32, 40)
    padded = F.pad(masks, (0, 23, 0, 31))
    torch.testing.assert_close(head(masks), head(padded))


# --- the model ----------------------------------------------------------------------------------

def test_inference_returns_instances_at_the_original_size():
    cfg = tiny_yolact_cfg("MODEL.YOLACT.SCORE_THRESH", "0.0")
    model = build_model(cfg).eval()
    image = torch.randint(0, 255, (3, 90, 150), dtype=torch.uint8)
    with torch.no_grad():
        instances = model([{"image": image, "height": 180, "width": 300}])[0]["instances"]
    assert instances.image_size == (180, 300)
    assert len(instances) == cfg.MODEL.YOLACT.DETECTIONS_PER_IMAGE
    assert instances.pred_masks.shape == (100, 180, 300)
    assert instances.pred_masks.dtype == torch.bool
    boxes = instances.pred_boxes.tensor
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 300).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 180).all()
    assert (instances.scores[:-1] >= instances.scores[1:]).all()
    assert set(instances.pred_classes.tolist()) <= {0, 1, 2}


def test_aspect_preserving_input_gives_the_same_kind_of_output():
    cfg = tiny_yolact_cfg("MODEL.YOLACT.PRESERVE_ASPECT_RATIO", "True")
    model = build_model(cfg).eval()
    image = torch.randint(0, 255, (3, 100, 200), dtype=torch.uint8)
    assert model.resize_and_normalize(image).shape[-2:] == (90, 181)  # 128^2 area, ratio 2
    with torch.no_grad():
        instances = model([{"image": image}])[0]["instances"]
    assert instances.image_size == (100, 200)
    assert instances.pred_masks.shape[1:] == (100, 200)


def test_training_returns_every_loss_and_gradients_reach_every_part():
    cfg = tiny_yolact_cfg("MODEL.YOLACT.MASK_RESCORING", "True")
    model = build_model(cfg).train()
    losses = model(batch_with_masks())
    assert set(losses) == {"loss_conf", "loss_box", "loss_mask", "loss_semantic",
                           "loss_mask_iou"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    parts = ["protonet", "head", "semantic_pred", "mask_iou_head", "backbone.lateral_convs",
             "backbone.output_convs", "backbone.downsample_convs"]
    for part in parts:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), part


def test_diverged_training_is_a_clear_error():
    model = build_model(tiny_yolact_cfg()).train()
    with torch.no_grad():
        model.head.class_pred.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="class_logits.*SOLVER.BASE_LR"):
        model(batch_with_masks())


def test_training_needs_images_at_the_input_size():
    model = build_model(tiny_yolact_cfg()).train()
    batch = batch_with_masks(size=100)
    with pytest.raises(ValueError, match="YOLACTDatasetMapper"):
        model(batch)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["MNV2_FPN_shapes.yaml", "yolact_plus_MNV2_FPN_shapes.yaml"])
def test_a_few_iterations_on_the_embedded_data_make_every_loss_fall(config, tmp_path):
    losses = ["loss_conf", "loss_box", "loss_mask", "loss_semantic"]
    if "plus" in config:
        losses.append("loss_mask_iou")
    not_falling = losses_not_falling(
        CONFIGS / config, tmp_path / "run", losses, "MODEL.YOLACT.INPUT_SIZE", "160",
        "MODEL.YOLACT.HEAD_CONV_DIM", "64", "MODEL.YOLACT.PROTONET_CONV_DIM", "64",
    )
    assert not_falling == {}


@pytest.mark.ddp
def test_two_process_data_parallel_training(tmp_path):
    """Two gloo workers train YOLACT++ through train_net.py: every parameter gets a gradient
    (the mask-IoU head too) and the positives count shared by the workers does not deadlock."""
    out = tmp_path / "ddp"
    res = run_train_net(CONFIGS / "yolact_plus_MNV2_FPN_shapes.yaml", "--num-gpus", "2",
                        *SHORT_SHAPES_RUN, "MODEL.YOLACT.INPUT_SIZE", "160", "SOLVER.MAX_ITER",
                        "4", "OUTPUT_DIR", str(out), timeout=600)
    assert "World size: 2" in res.stdout + res.stderr
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 3


# --- the reference's checkpoints --------------------------------------------------------------

def _reference_spec(path):
    spec = {}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            spec[key] = (tuple(int(d) for d in shape.split("x")) if shape != "scalar" else (),
                         dtype)
    return spec


def _state_dict_from(spec):
    generator = torch.Generator().manual_seed(0)
    return {key: torch.zeros(shape, dtype=torch.int64) if dtype == "int64"
            else torch.rand(shape, generator=generator) + 0.5
            for key, (shape, dtype) in spec.items()}


REFERENCE_MODELS = [
    # (key list, our config)
    (KEY_LISTS / "yolact_base_550_R101.tsv", "yolact_R_101_550.yaml"),
    (FIXTURES / "yolact_base_config_keys.tsv", "yolact_R_101_550.yaml"),
    (FIXTURES / "yolact_plus_resnet50_config_keys.tsv", "yolact_plus_R_50_550.yaml"),
    (FIXTURES / "yolact_resnet50_config_keys.tsv", "yolact_R_50_550.yaml"),
    (FIXTURES / "yolact_plus_base_config_keys.tsv", "yolact_plus_R_101_550.yaml"),
]


@pytest.mark.parametrize("key_list,config", REFERENCE_MODELS,
                         ids=["shared_yolact_base", "yolact_base", "yolact_plus_resnet50",
                              "yolact_resnet50", "yolact_plus_base"])
def test_reference_checkpoint_converts_with_every_key_accounted_for(key_list, config, tmp_path):
    spec = _reference_spec(require_shared(key_list) if "shared" in str(key_list) else key_list)
    state = _state_dict_from(spec)
    converted, report = convert_reference_state_dict(state)
    assert len(report.renamed) + len(report.dropped) == len(state) and not report.unused
    assert all(k.endswith("num_batches_tracked") for k in report.dropped)
    model = build_model(load_config(str(CONFIGS / config), [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]))
    incompatible = model.load_state_dict(converted, strict=False)
    assert incompatible.missing_keys == [] and incompatible.unexpected_keys == []
    # the checkpointer converts the reference's file by itself
    path = tmp_path / "reference.pth"
    torch.save(state, path)
    SafeCheckpointer(model).load(str(path))
    loaded = model.state_dict()
    for theirs, ours in report.renamed.items():
        torch.testing.assert_close(loaded[ours], state[theirs], msg=theirs)
    dcn_biases = [k for k in report.renamed if k.endswith(".conv2.bias")]
    assert ("yolact_plus" in config) == bool(dcn_biases)


def test_deformable_conv_bias_is_the_deformable_convs_own_and_protonet_layout():
    from yolact.checkpoint_conversion import _protonet_names

    state = _state_dict_from(_reference_spec(FIXTURES / "yolact_plus_resnet50_config_keys.tsv"))
    converted, report = convert_reference_state_dict(state)
    ours = report.renamed["backbone.layers.1.0.conv2.bias"]
    assert ours == "backbone.bottom_up.res3.0.conv2.bias"
    assert converted["backbone.bottom_up.res3.0.conv2.norm.running_mean"] is \
        state["backbone.layers.1.0.bn2.running_mean"]
    # ProtoNet: conv, ReLU, conv, ReLU, upsampling, ReLU, conv, ReLU, 1x1: two convs before the
    # upsampling (refine, tower 0), the upsampling (tower 1), one conv (tower 2), the predictor
    proto = {f"proto_net.{i}.weight": torch.zeros(1) for i in (0, 2, 6, 8)}
    assert _protonet_names(proto) == {0: "refine.0.0", 2: "tower.0.0", 6: "tower.2.0",
                                      8: "tower.3"}


def test_unknown_reference_key_is_named():
    state = {"prediction_layers.0.conf_layer.weight": torch.zeros(1),
             "proto_net.0.weight": torch.zeros(1), "proto_net.4.weight": torch.zeros(1),
             "class_existence_fc.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="class_existence_fc.weight"):
        convert_reference_state_dict(state)


def test_convert_tool_writes_a_checkpoint_our_model_loads(tmp_path):
    import subprocess
    import sys

    spec = _reference_spec(FIXTURES / "yolact_plus_resnet50_config_keys.tsv")
    torch.save(_state_dict_from(spec), tmp_path / "reference.pth")
    tool = ROOT / "projects/YOLACT/tools/convert_checkpoint.py"
    result = subprocess.run([sys.executable, str(tool), str(tmp_path / "reference.pth"),
                             str(tmp_path / "ours.pth")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "352 keys renamed" in result.stdout  # 13 of them deformable-conv biases: 4 + 6 + 3
    model = build_model(load_config(str(CONFIGS / "yolact_plus_R_50_550.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()"]))
    SafeCheckpointer(model).load(str(tmp_path / "ours.pth"))
    # a file of another model is refused by name
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    result = subprocess.run([sys.executable, str(tool), str(tmp_path / "other.pth"),
                             str(tmp_path / "x.pth")], capture_output=True, text=True)
    assert result.returncode != 0 and "not a dbolya/yolact state dict" in result.stderr


def test_mapper_resizes_training_images_and_keeps_crowd_boxes():
    from yolact.dataset_mapper import YOLACTDatasetMapper

    cfg = tiny_yolact_cfg()
    record = {"file_name": str(ROOT / "tests/fixtures/does_not_matter.jpg"), "height": 100,
              "width": 200, "image_id": 0, "annotations": [
                  {"bbox": [10.0, 10.0, 50.0, 40.0], "bbox_mode": 1, "category_id": 1, "iscrowd": 0,
                   "segmentation": [[10, 10, 60, 10, 60, 50, 10, 50]]},
                  {"bbox": [100, 20, 80, 60], "bbox_mode": 1, "category_id": 0, "iscrowd": 1,
                   "segmentation": {"size": [100, 200], "counts": "PPYo1"}}]}
    mapper = YOLACTDatasetMapper(cfg, is_train=True)
    mapper.augmentations.augs[-1].prob = 0.0  # no flip
    import detectron2.data.detection_utils as utils
    original = utils.read_image
    utils.read_image = lambda *a, **k: np.zeros((100, 200, 3), dtype=np.uint8)
    try:
        out = mapper(record)
    finally:
        utils.read_image = original
    assert out["image"].shape == (3, 128, 128)
    assert len(out["instances"]) == 1
    torch.testing.assert_close(out["instances"].gt_boxes.tensor,
                               torch.tensor([[6.4, 12.8, 38.4, 64.0]]))
    torch.testing.assert_close(out["crowd_boxes"], torch.tensor([[64.0, 25.6, 115.2, 102.4]]))
