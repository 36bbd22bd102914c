"""MobileInst (projects/MobileInst): matching and losses on hand-computed cases (Sec. 3.6), the
instance and mask decoders of every config alternative (Tables 3, 5, 6), NMS-free inference,
kernel reuse (Sec. 3.4, Eq. 1), kernel association through a crossing, query passing (Sec. 3.5)
and a few training iterations on the embedded data."""
import itertools
import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

from mobileinst.config import DECODER_KINDS, MASK_DECODERS, POOL_TYPES
from mobileinst.criterion import MobileInstCriterion, downsample_masks, mask_score_cost
from mobileinst.inference import Selection, boxes_from_masks, instances_from_kernels
from mobileinst.instance_decoder import InstanceDecoder, pool_local_features
from mobileinst.kernel_association import KernelCosine
from mobileinst.mask_decoder import build_mask_decoder
from mobileinst.query_passing import frames_of_batch
from rtinst.config import get_cfg
from rtinst.video.tracker import OnlineTracker
from tiny_models import CONFIGS, batch_with_masks, without_gradient
from train_net_runner import losses_not_falling

SHAPES_CONFIG = CONFIGS / "MobileInst/MNv2_shapes.yaml"
WEIGHTS = {"loss_cls": 2.0, "loss_mask_dice": 2.0, "loss_mask_bce": 2.0, "loss_objectness": 1.0}
LOSSES = tuple(WEIGHTS)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def tiny_cfg(*opts):
    """MobileInst-MNv2 (ImageNet weights) with a 3-class, 32-query, 64-wide decoder."""
    cfg = get_cfg()
    cfg.merge_from_file(str(SHAPES_CONFIG))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.MOBILEINST.NUM_CLASSES", "3",
                         "DATASETS.TRAIN", "()", "DATASETS.TEST", "()",
                         "MODEL.MOBILEINST.INSTANCE_DECODER.NUM_QUERIES", "32",
                         "MODEL.MOBILEINST.INSTANCE_DECODER.HIDDEN_DIM", "64",
                         "MODEL.MOBILEINST.INSTANCE_DECODER.DIM_FEEDFORWARD", "128",
                         "MODEL.MOBILEINST.INSTANCE_DECODER.KERNEL_DIM", "32",
                         "MODEL.MOBILEINST.MASK_DECODER.CHANNELS", "32",
                         "MODEL.MNV2_GLOBAL.CHANNELS", "64", *opts])
    return cfg


def _criterion():
    """Two classes, masks predicted at the input's resolution (stride 1)."""
    return MobileInstCriterion(num_classes=2, weights=WEIGHTS, mask_stride=1)


def _gt(masks, labels, size):
    instances = Instances(size)
    instances.gt_classes = torch.tensor(labels, dtype=torch.int64)
    instances.gt_masks = BitMasks(torch.tensor(masks, dtype=torch.bool).reshape(-1, *size))
    return instances


def test_matching_score_is_dice_to_the_alpha_times_class_probability_to_the_beta():
    masks = torch.tensor([[[2.0, -2.0], [-2.0, -2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    logits = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    cost = mask_score_cost({"pred_masks": masks, "pred_logits": logits},
                           {"masks": target, "labels": torch.tensor([0])})
    p0 = [sigmoid(2.0), sigmoid(-2.0), sigmoid(-2.0), sigmoid(-2.0)]
    dice0 = 2 * p0[0] / (sum(p0) + 1 + 1e-4)
    dice1 = 2 * 0.5 / (2.0 + 1 + 1e-4)
    expected = [-(dice0 ** 0.8) * sigmoid(0.0) ** 0.2, -(dice1 ** 0.8) * sigmoid(1.0) ** 0.2]
    assert cost[:, 0].tolist() == pytest.approx(expected, rel=1e-5)


def test_matching_is_the_optimal_assignment_of_more_queries_than_objects():
    """Against a brute force over every assignment of 3 objects to 5 queries."""
    generator = torch.Generator().manual_seed(0)
    masks = torch.randn(1, 5, 4, 4, generator=generator) * 3
    logits = torch.randn(1, 5, 2, generator=generator)
    targets = [{"labels": torch.tensor([0, 1, 1]),
                "masks": (torch.rand(3, 4, 4, generator=generator) > 0.5).float()}]
    (queries, objects), = _criterion().matcher({"pred_logits": logits, "pred_masks": masks},
                                               targets)
    score = -mask_score_cost({"pred_logits": logits[0], "pred_masks": masks[0]}, targets[0])
    best = max(itertools.permutations(range(5), 3),
               key=lambda q: sum(score[q[t], t] for t in range(3)))
    assert sorted(zip(objects.tolist(), queries.tolist())) == list(zip(range(3), best))


def test_each_loss_on_a_hand_computed_input():
    """Two queries, one object of class 0 (top-left pixel of a 2 x 2 image); query 0 matches."""
    logits = torch.tensor([[[0.0, -1.0], [1.0, 0.0]]])
    objectness = torch.tensor([[[0.5], [-0.5]]])
    masks = torch.tensor([[[[2.0, -2.0], [-2.0, -2.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    losses = _criterion()(logits, objectness, masks, [_gt([[1, 0], [0, 0]], [0], (2, 2))])

    def focal(x, t, alpha=0.25, gamma=2.0):
        p = sigmoid(x)
        ce = -math.log(p) if t else -math.log(1 - p)
        p_t = p if t else 1 - p
        return (alpha if t else 1 - alpha) * ce * (1 - p_t) ** gamma

    cls = focal(0.0, 1) + focal(-1.0, 0) + focal(1.0, 0) + focal(0.0, 0)  # / 1 object
    p = [sigmoid(2.0)] + [sigmoid(-2.0)] * 3
    dice = 1 - (2 * p[0] + 1) / (sum(p) + 1 + 1)
    bce = (-math.log(p[0]) - 3 * math.log(1 - p[1])) / 4
    objectness_loss = -math.log(sigmoid(0.5))  # thresholded mask IoU 1
    expected = {"loss_cls": 2 * cls, "loss_mask_dice": 2 * dice, "loss_mask_bce": 2 * bce,
                "loss_objectness": objectness_loss}
    assert {k: v.item() for k, v in losses.items()} == pytest.approx(expected, rel=1e-5)


def test_objectness_target_is_the_thresholded_mask_iou():
    """Query 0's mask > 0.4 covers 2 pixels, the object 1 of them: IoU 1 / 2."""
    masks = torch.tensor([[[[3.0, 0.0], [-3.0, -3.0]], [[-3.0] * 2] * 2]])
    objectness = torch.tensor([[[1.0], [0.0]]])
    logits = torch.tensor([[[5.0, -5.0], [-5.0, -5.0]]])
    losses = _criterion()(logits, objectness, masks, [_gt([[1, 0], [0, 0]], [0], (2, 2))])
    expected = -(0.5 * math.log(sigmoid(1.0)) + 0.5 * math.log(1 - sigmoid(1.0)))
    assert losses["loss_objectness"].item() == pytest.approx(expected, rel=1e-5)


def test_an_image_without_objects_has_only_the_negative_classification_loss():
    logits = torch.zeros(1, 3, 2, requires_grad=True)
    objectness = torch.zeros(1, 3, 1, requires_grad=True)
    masks = torch.zeros(1, 3, 4, 4, requires_grad=True)
    losses = _criterion()(logits, objectness, masks, [_gt([], [], (4, 4))])
    assert losses["loss_cls"].item() == pytest.approx(2 * 6 * 0.75 * math.log(2) * 0.25)
    assert all(losses[k].item() == 0 for k in ("loss_mask_dice", "loss_mask_bce",
                                                "loss_objectness"))
    sum(losses.values()).backward()
    assert masks.grad is not None and objectness.grad is not None


def test_an_image_whose_instances_have_no_masks_field_trains():
    """Detectron2's mapper gives an image without objects no ``gt_masks``."""
    empty = Instances((4, 4))
    empty.gt_classes = torch.zeros(0, dtype=torch.int64)
    losses = _criterion()(torch.zeros(1, 3, 2), torch.zeros(1, 3, 1), torch.zeros(1, 3, 4, 4),
                          [empty])
    assert losses["loss_mask_dice"].item() == 0 and losses["loss_cls"].item() > 0


def test_object_masks_are_area_downsampled_to_the_prediction():
    masks = torch.zeros(1, 6, 7, dtype=torch.bool)
    masks[0, :, :4] = True  # rows 4-5 of the 8 padded ones: half of cell (1, 0)
    small = downsample_masks(masks, (2, 2), 4)  # padded to 8 x 8
    assert small[0].tolist() == [[1.0, 0.0], [0.5, 0.0]]


def test_a_smaller_image_of_the_batch_keeps_the_batch_stride():
    """A 16 x 16 image in a batch padded to 32 x 32: its masks are pooled by 8 like the
    others' (not by 16 / 4), so that each target cell sits under its prediction cell."""
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, 8:, 8:] = True
    assert downsample_masks(masks, (4, 4), 8)[0].tolist() == [
        [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="exceed"):
        downsample_masks(torch.zeros(1, 40, 8), (4, 4), 8)


@pytest.mark.parametrize("kind", sorted(DECODER_KINDS))
@pytest.mark.parametrize("pool_type", POOL_TYPES)
def test_instance_decoder_of_every_kind_and_pooling(kind, pool_type):
    decoder = InstanceDecoder(global_channels=24, kernel_dim=16, num_classes=5, num_queries=7,
                              hidden_dim=32, num_heads=4, dim_feedforward=64, kind=kind,
                              pool_type=pool_type)
    out = decoder(torch.randn(2, 24, 2, 3), torch.randn(2, 16, 16, 24))
    assert out.logits.shape == (2, 7, 5) and out.objectness.shape == (2, 7, 1)
    assert out.kernels.shape == (2, 7, 16)
    assert (out.global_queries is not None) == kind.startswith("global")


def test_local_features_are_the_mask_features_pooled_by_8():
    x = torch.arange(2 * 16 * 16, dtype=torch.float).reshape(1, 2, 16, 16)
    assert pool_local_features(x, "max", 8)[0, 0].tolist() == [[119.0, 127.0], [247.0, 255.0]]
    assert pool_local_features(x, "avg", 8)[0, 0].tolist() == [[59.5, 67.5], [187.5, 195.5]]
    assert pool_local_features(x, "none", 8) is x


@pytest.mark.parametrize("kind", MASK_DECODERS)
def test_mask_decoder_gives_one_stride_8_map(kind):
    decoder = build_mask_decoder(kind, [8, 16, 24], 40, channels=16, kernel_dim=12,
                                 num_convs=2, norm="BN")
    features = [torch.randn(2, c, 64 // s, 128 // s) for c, s in ((8, 8), (16, 16), (24, 32))]
    assert decoder(features, torch.randn(2, 40, 1, 2)).shape == (2, 12, 8, 16)


def test_unknown_alternatives_name_their_key():
    with pytest.raises(ValueError, match="INSTANCE_DECODER.KIND"):
        InstanceDecoder(global_channels=8, kernel_dim=8, num_classes=2, kind="global_global")
    with pytest.raises(ValueError, match="MASK_DECODER.KIND"):
        build_mask_decoder("fpn", [8], 8, 8, 8, 1, "BN")
    with pytest.raises(ValueError, match="TEST.MASK_THRESHOLD"):
        build_model(tiny_cfg("MODEL.MOBILEINST.TEST.MASK_THRESHOLD", "1.0"))
    with pytest.raises(ValueError, match="QUERY_PASSING needs the global-local"):
        build_model(tiny_cfg("MODEL.MOBILEINST.VIDEO.QUERY_PASSING", "True",
                             "MODEL.MOBILEINST.INSTANCE_DECODER.KIND", "local_local"))
    with pytest.raises(ValueError, match="KERNEL_REUSE_FRAMES"):
        build_model(tiny_cfg("MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES", "0"))


def test_query_passing_feeds_the_earlier_frames_global_queries_to_the_local_decoder():
    torch.manual_seed(0)
    decoder = InstanceDecoder(global_channels=8, kernel_dim=8, num_classes=2, num_queries=4,
                              hidden_dim=16, num_heads=2, dim_feedforward=32).eval()
    frame_t = (torch.randn(1, 8, 1, 2), torch.randn(1, 8, 8, 16))
    frame_later = (torch.randn(1, 8, 1, 2), torch.randn(1, 8, 8, 16))
    passing = decoder(*frame_t).global_queries
    passed = decoder(*frame_later, passed_queries=passing)
    memory, memory_pos = decoder.memory("local", *frame_later)
    _, query_pos = decoder.queries(memory)
    by_hand = decoder.layers[1](passing, memory, query_pos, memory_pos)
    assert torch.allclose(passed.kernels, decoder.kernel_head(by_hand), atol=1e-6)
    assert not torch.allclose(passed.kernels, decoder(*frame_later).kernels, atol=1e-3)


def test_a_clip_passes_its_first_frames_queries_to_its_last():
    clip = {"frames": [{"image": 0}, {"image": 1}]}
    frames, pairs = frames_of_batch([{"image": 2}, clip], query_passing=True)
    assert [f["image"] for f in frames] == [2, 0, 1] and pairs == [(1, 2)]
    assert frames_of_batch([clip], query_passing=False)[1] == []


def test_boxes_of_masks_include_the_edge_pixels_and_empty_masks_are_zero():
    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    assert boxes_from_masks(masks).tolist() == [[2.0, 1.0, 5.0, 3.0], [0.0, 0.0, 0.0, 0.0]]


def test_inference_keeps_the_queries_above_the_threshold_with_masks_at_the_image_size():
    mask_features = torch.full((2, 4, 4), -10.0)
    mask_features[0, :2, :2] = 10.0  # kernel (1, 0): the top-left quarter of the padded input
    selection = Selection(torch.tensor([0.9, 0.3, 0.01]), torch.tensor([2, 0, 1]),
                          torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    boxes, scores, classes, masks = instances_from_kernels(
        selection, mask_features, 0.05, 0.5, 8, (24, 32), (48, 64))
    assert scores.tolist() == pytest.approx([0.9, 0.3]) and classes.tolist() == [2, 0]
    # the 32 x 32 padded input's quarter is 16 x 16, the crop 24 x 32 resized to 48 x 64: a
    # 32 x 32 square, its inner corner rounded by the bilinear upsampling
    assert masks.shape == (2, 48, 64) and masks[0, :24, :32].all() and masks[0, :32, :24].all()
    assert not masks[0, 33:].any() and not masks[0, :, 33:].any() and not masks[1].any()
    assert boxes[0].tolist() == pytest.approx([0.0, 0.0, 32.0, 32.0], abs=1.0)


def test_an_image_without_instances_gives_empty_outputs():
    selection = Selection(torch.tensor([0.01]), torch.tensor([2]), torch.tensor([[1.0, 0.0]]))
    boxes, scores, classes, masks = instances_from_kernels(
        selection, torch.zeros(2, 4, 4), 0.05, 0.5, 8, (24, 32), (48, 64))
    assert boxes.shape == (0, 4) and scores.shape == classes.shape == (0,)
    assert masks.shape == (0, 48, 64)


def _model(*opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*opts))


def test_training_returns_every_loss_and_gradients_reach_every_part():
    model = _model().train()
    losses = model(batch_with_masks())
    assert set(losses) == set(LOSSES)
    sum(losses.values()).backward()
    parts = {name: p for name, p in model.named_parameters()
             if p.requires_grad and not name.startswith("backbone.bottom_up")}
    assert without_gradient(parts) == []


def test_temporal_training_adds_the_passed_predictions_against_the_later_frames_objects():
    model = _model("MODEL.MOBILEINST.VIDEO.QUERY_PASSING", "True").train()
    seen = {}

    class Capture(torch.nn.Module):
        def forward(self, logits, objectness, masks, gt_instances):
            seen["images"], seen["gt"] = len(logits), gt_instances
            return {"loss": masks.sum() * 0 + logits.sum()}

    model.criterion = Capture()
    earlier, later = batch_with_masks()
    losses = model([{"frames": [earlier, later]}])
    assert seen["images"] == 3 and seen["gt"][2] is seen["gt"][1]
    losses["loss"].backward()  # the passed queries carry the earlier frame's gradient
    assert model.instance_decoder.layers[0].linear2.weight.grad.abs().sum() > 0


def _frames(count=4):
    generator = torch.Generator().manual_seed(1)
    return [{"image": torch.randint(0, 255, (3, 100, 140), generator=generator,
                                    dtype=torch.uint8).float(), "height": 100, "width": 140}
            for _ in range(count)]


def _run_video(model, frames):
    state, outputs = model.video_state(), []
    for frame in frames:
        out, state = model.forward_frame(frame, state)
        outputs.append(out)
    return outputs


def test_kernel_reuse_with_t_1_is_per_frame_inference():
    model = _model("MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES", "1",
                   "MODEL.MOBILEINST.TEST.SCORE_THRESH", "0.0").eval()
    frames = _frames(3)
    with torch.no_grad():
        video = _run_video(model, frames)
        images = [model([frame])[0]["instances"] for frame in frames]
    for out, image in zip(video, images):
        assert out["keyframe"]
        assert torch.equal(out["instances"].scores, image.scores)
        assert torch.equal(out["instances"].pred_masks, image.pred_masks)
        assert torch.equal(out["instances"].pred_kernels, image.pred_kernels)


def test_kernel_reuse_runs_the_keyframes_kernels_on_the_next_t_minus_1_frames():
    model = _model("MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES", "3",
                   "MODEL.MOBILEINST.TEST.SCORE_THRESH", "0.0").eval()
    frames = _frames(4)
    with torch.no_grad():
        video = _run_video(model, frames)
        image = model([frames[1]])[0]["instances"]
        decoder_calls = []
        model.instance_decoder.register_forward_hook(lambda *a: decoder_calls.append(1))
        _run_video(model, frames)
    assert [out["keyframe"] for out in video] == [True, False, False, True]
    assert len(decoder_calls) == 2  # frames 0 and 3 only
    reused = video[1]["instances"]
    assert torch.equal(reused.pred_kernels, video[0]["instances"].pred_kernels)
    assert torch.equal(reused.scores, video[0]["instances"].scores)
    # frame 1's masks are frame 0's kernels on frame 1's features (Eq. 1)
    assert not torch.equal(reused.pred_masks, image.pred_masks)
    selection = Selection(reused.scores, reused.pred_classes, reused.pred_kernels)
    with torch.no_grad():
        images = model.preprocess_image([frames[1]])
        mask_features = model.encode(images.tensor)[1][0]
    expected = model.instances_tensors(selection, mask_features, images.image_sizes[0],
                                       (100, 140))[3]
    assert torch.equal(reused.pred_masks, expected)


def _detections(kernels, boxes, size=(100, 100)):
    instances = Instances(size)
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float))
    instances.scores = torch.full((len(boxes),), 0.9)
    instances.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
    instances.pred_kernels = torch.tensor(kernels, dtype=torch.float)
    return instances


def test_kernel_association_keeps_identities_through_a_crossing():
    """Two objects of one class swap places through the same spot; their kernels (slightly
    noisy) stay theirs: IDs follow the kernels, not the positions."""
    cfg = get_cfg()
    cfg.MODEL.TRACKER.ASSOCIATION = "KernelCosine"
    cfg.MODEL.TRACKER.CONFIRM_FRAMES = 1
    tracker = OnlineTracker(cfg)
    a, b = [1.0, 0.0, 0.2], [0.0, 1.0, 0.1]
    ids = []
    for step, x in enumerate([10, 30, 45, 50, 55, 70, 90]):
        noise = 0.05 * (-1) ** step
        boxes = [[x, 30, x + 20, 52], [100 - x - 20, 48, 100 - x, 70]]
        kernels = [[a[0] + noise, a[1], a[2]], [b[0], b[1] - noise, b[2]]]
        tracked = tracker.update(_detections(kernels, boxes), {})
        by_kernel = {round(float(k[0])): int(i) for k, i in zip(tracked.pred_kernels,
                                                                 tracked.pred_ids)}
        ids.append((by_kernel[1], by_kernel[0]))
    assert len(set(ids)) == 1 and ids[0][0] != ids[0][1]


def test_kernel_association_refuses_dissimilar_kernels():
    association = KernelCosine(min_similarity=0.5)

    class Track:
        last = _detections([[1.0, 0.0]], [[0, 0, 10, 10]])

    assert association([Track()], _detections([[0.0, 1.0]], [[0, 0, 10, 10]])) == []
    assert association([Track()], _detections([[1.0, 0.1]], [[50, 50, 60, 60]])) == [(0, 0)]


@pytest.mark.parametrize("name", ["mobileinst_TopFormer_B_640", "mobileinst_TopFormer_B_512",
                                  "mobileinst_MNv2_640"])
def test_paper_configs_build_and_segment(name):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "MobileInst" / f"{name}.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.MOBILEINST.TEST.SCORE_THRESH", "0.0",
                         "MODEL.MOBILEINST.TEST.TOPK", "5"])
    model = build_model(cfg).eval()
    with torch.no_grad():
        instances = model(_frames(1))[0]["instances"]
    assert len(instances) == 5 and instances.pred_masks.shape == (5, 100, 140)
    assert instances.pred_kernels.shape == (5, 128)


@pytest.mark.slow
def test_a_few_iterations_on_the_embedded_data_make_every_loss_fall(tmp_path):
    not_falling = losses_not_falling(
        SHAPES_CONFIG, tmp_path / "run", LOSSES,
        "MODEL.MOBILEINST.INSTANCE_DECODER.NUM_QUERIES", "32",
        "MODEL.MOBILEINST.INSTANCE_DECODER.HIDDEN_DIM", "64",
        "MODEL.MOBILEINST.INSTANCE_DECODER.DIM_FEEDFORWARD", "128",
        "MODEL.MOBILEINST.MASK_DECODER.CHANNELS", "64")
    assert not_falling == {}
