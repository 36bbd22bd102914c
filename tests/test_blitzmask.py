"""BlitzMask: Eq. 1, peak extraction, the mobile-only architecture, training and prediction."""
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import distributed as dist
from torch import nn

from blitzmask.lite_head import HeadOutputs
from blitzmask.peaks import decode_boxes, extract_peaks
from blitzmask.spanning_set import gather_coefficients
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from rtinst.engine import load_config
from rtinst.modeling.layers import assemble_masks, grid_masks_to_image
from tiny_models import BLITZMASK_CONFIG, batch_with_masks, tiny_blitzmask_cfg, without_gradient
from train_net_runner import ROOT, losses_not_falling

LOSSES = ["loss_heatmap", "loss_size_l1", "loss_size_iou", "loss_mask_bce", "loss_mask_dice"]


def test_eq1_mask_is_the_coefficient_weighted_sum_of_the_spanning_set():
    spanning_set = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3)  # K=2, 2x3 grid
    coefficients = torch.zeros(2, 2, 3)
    coefficients[:, 1, 2] = torch.tensor([2.0, -1.0])  # instance at cell (x=2, y=1) -> flat 5
    coefficients[:, 0, 0] = torch.tensor([0.0, 1.0])
    lambdas = gather_coefficients(coefficients, torch.tensor([5, 0]))
    assert lambdas.tolist() == [[2.0, -1.0], [0.0, 1.0]]
    masks = assemble_masks(lambdas, spanning_set)
    assert torch.equal(masks[0], 2 * spanning_set[0] - spanning_set[1])
    assert torch.equal(masks[1], spanning_set[1])


def test_masks_are_resized_to_the_image_once_and_thresholded_at_sigmoid_half():
    logits = torch.tensor([[[-1.0, 1.0], [1.0, -1.0]]])  # 2x2 grid, stride 4 -> 8x8 input
    masks = grid_masks_to_image(logits, stride=4, input_size=(8, 8), output_size=(8, 8))
    upsampled = torch.nn.functional.interpolate(logits[None], size=(8, 8), mode="bilinear")[0]
    assert masks.shape == (1, 8, 8) and masks.dtype == torch.bool
    assert torch.equal(masks, upsampled > 0)
    # the image filled only the top-left 4x8 of the padded input (grid row 0 and the top of
    # row 1), shown at 8x16: output pixel (i, j) samples the grid at ((i + 0.5) / 8 - 0.5,
    # (j + 0.5) / 8 - 0.5), where bilinear interpolation gives (2u - 1)(1 - 2v) with v < 0.5:
    # positive from column 8 on, in every row
    crop = grid_masks_to_image(logits, stride=4, input_size=(4, 8), output_size=(8, 16))
    assert crop.shape == (1, 8, 16)
    assert not crop[0, :, :8].any() and crop[0, :, 8:].all()
    boxed = grid_masks_to_image(logits, 4, (8, 8), (8, 8),
                                boxes=torch.tensor([[4.0, 0.0, 8.0, 2.0]]))
    assert boxed.sum() == 8 and boxed[0, :2, 4:].all()
    assert grid_masks_to_image(logits[:0], 4, (8, 8), (6, 5)).shape == (0, 6, 5)


def test_peaks_are_local_maxima_of_the_top_k_above_the_threshold():
    heat = torch.full((2, 5, 5), 0.01)
    heat[0, 1, 1], heat[0, 1, 2] = 0.9, 0.8  # (1, 2) is next to a higher cell: not a peak
    heat[1, 3, 3] = 0.7
    heat[1, 0, 4] = 0.2
    peaks = extract_peaks(torch.logit(heat), topk=10, score_thresh=0.3)
    assert torch.allclose(peaks.scores, torch.tensor([0.9, 0.7]))
    assert peaks.classes.tolist() == [0, 1]
    assert peaks.cells.tolist() == [1 * 5 + 1, 3 * 5 + 3]
    assert len(extract_peaks(torch.logit(heat), topk=1, score_thresh=0.0).scores) == 1


def test_a_uniform_padding_area_gives_no_peaks():
    heat = torch.full((1, 4, 6), 0.01)
    heat[0, 1, 1] = 0.5
    heat[0, :, 4:] = 0.4  # plateau: every cell equals its neighbourhood's maximum
    assert len(extract_peaks(torch.logit(heat), 10, 0.1).scores) == 9
    peaks = extract_peaks(torch.logit(heat), 10, 0.1, stride=4, image_size=(16, 16))
    assert peaks.cells.tolist() == [1 * 6 + 1]  # columns 4-5 start at x = 16, 20: padding
    inside = extract_peaks(torch.logit(heat), 10, 0.1, stride=4, image_size=torch.tensor([8, 24]))
    assert sorted(inside.cells.tolist()) == [4, 5, 7, 10, 11]


def test_boxes_decode_from_the_size_map_at_the_peak():
    sizes = torch.tensor([[0.5, 1.0, 2.0, 0.25]])  # at cell (x=1, y=2) of a 4-wide grid
    boxes = decode_boxes(sizes, torch.tensor([2 * 4 + 1]), width=4, stride=4)  # centre (6, 10)
    assert boxes.tolist() == [[4.0, 6.0, 14.0, 11.0]]


def test_only_mobile_friendly_layers():
    model = build_model(tiny_blitzmask_cfg())
    kinds = {type(m).__name__ for m in model.modules()}
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert not any("Deform" in k for k in kinds)
    assert model.stride == 4


def test_training_returns_every_loss_and_gradients_reach_every_part():
    model = build_model(tiny_blitzmask_cfg())
    losses = model(batch_with_masks())
    assert sorted(losses) == sorted(LOSSES)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    parts = {
        "backbone": model.backbone.bottom_up.stem[0][0].weight,
        "fpn": model.backbone.laterals[0].weight,
        "heatmap": model.head.heatmap[-1].weight,
        "size": model.head.size[-1].weight,
        "coefficients": model.head.coefficients[-1].weight,
        "spanning set": model.head.spanning_set[-1].weight,
    }
    assert without_gradient(parts) == []


def test_mask_loss_reaches_coefficients_and_spanning_set_only_through_eq1():
    model = build_model(tiny_blitzmask_cfg())
    losses = model(batch_with_masks())
    (losses["loss_mask_bce"] + losses["loss_mask_dice"]).backward()
    assert model.head.heatmap[-1].weight.grad is None
    assert model.head.size[-1].weight.grad is None
    assert without_gradient({"c": model.head.coefficients[-1].weight,
                             "b": model.head.spanning_set[-1].weight}) == []


def test_an_image_without_objects_trains():
    model = build_model(tiny_blitzmask_cfg())
    losses = model(batch_with_masks(([], [])))
    assert losses["loss_heatmap"] > 0 and losses["loss_mask_dice"] == 0
    sum(losses.values()).backward()


def test_default_predictor_returns_masks_at_image_resolution():
    cfg = tiny_blitzmask_cfg("MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.0", "MODEL.BLITZMASK.TEST.TOPK", "7")
    image = np.random.default_rng(0).integers(0, 255, (150, 210, 3), dtype=np.uint8)
    out = DefaultPredictor(cfg)(image)["instances"]
    assert len(out) == 7
    assert out.pred_masks.shape == (7, 150, 210) and out.pred_masks.dtype == torch.bool
    assert (out.scores[:-1] >= out.scores[1:]).all()
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 210).all() and (boxes[:, 3] <= 150).all()


@pytest.mark.parametrize("config", ["blitzmask_MNv2_320.yaml", "blitzmask_EffLite_B4_320.yaml"])
def test_paper_configs_build_and_run_at_320(config):
    cfg = load_config(str(ROOT / "configs/BlitzMask" / config), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, 320, 320)}])[0]["instances"]
    assert out.image_size == (320, 320)


@pytest.mark.slow
def test_a_few_iterations_on_the_embedded_data_make_every_loss_fall(tmp_path):
    not_falling = losses_not_falling(BLITZMASK_CONFIG, tmp_path / "run", LOSSES,
                                     "MODEL.SEPARABLE_FPN.OUT_CHANNELS", "32",
                                     "MODEL.BLITZMASK.HEAD_CHANNELS", "32",
                                     "SOLVER.LR_SCHEDULER_NAME", "WarmupMultiStepLR")
    assert not_falling == {}


def _fixed_maps(batch_size, size=128, num_classes=3, num_bases=32, stride=4):
    """Head outputs for a ``batch_size`` batch of ``size`` px images, seeded."""
    generator = torch.Generator().manual_seed(0)
    grid = size // stride
    return HeadOutputs(*(torch.randn(batch_size, channels, grid, grid, generator=generator)
                         for channels in (num_classes, 4, num_bases, num_bases)))


@pytest.mark.parametrize("mask_crop, crop", [("box", True), ("none", False), ("loss", True)])
def test_mask_crop_decides_whether_the_cross_entropy_sees_outside_the_box(mask_crop, crop):
    """MODEL.BLITZMASK.MASK_CROP "box" or "loss": mask logits outside the object's box do not
    change the cross-entropy; "none": they do (it is averaged over the whole map)."""
    model = build_model(tiny_blitzmask_cfg("MODEL.BLITZMASK.MASK_CROP", mask_crop))
    gt = [x["instances"] for x in batch_with_masks(([((8, 8, 40, 40), 0)],))]
    maps = _fixed_maps(1)._replace(coefficients=torch.ones(1, 32, 32, 32))  # M = sum_k B^k
    before = model.losses(maps, gt)["loss_mask_bce"]
    maps.spanning_set[:, :, 16:, 16:] = 1.0  # M = 32 on the cells from 64 px on: far off the box
    after = model.losses(maps, gt)["loss_mask_bce"]
    assert (after == before) if crop else (after > before + 0.01)


@pytest.mark.parametrize("mask_crop, crop", [("box", True), ("none", False), ("loss", False)])
def test_mask_crop_at_inference_zeroes_the_mask_outside_the_predicted_box(mask_crop, crop):
    model = build_model(tiny_blitzmask_cfg("MODEL.BLITZMASK.MASK_CROP", mask_crop)).eval()
    heatmap = torch.full((3, 32, 32), -10.0)
    heatmap[1, 5, 5] = 5.0  # one peak, at cell (5, 5): centre (22, 22) px
    peaks = extract_peaks(heatmap, 10, 0.1, stride=4, image_size=(128, 128))
    boxes = decode_boxes(torch.full((1, 4), 2.0), peaks.cells, 32, 4)  # 8 px to each side
    logits = torch.full((1, 32, 32), 32.0)  # M = 32 everywhere
    out = model.instances(boxes, peaks.scores, peaks.classes, logits, (128, 128), (128, 128))
    assert out.pred_boxes.tensor.tolist() == [[14.0, 14.0, 30.0, 30.0]]
    assert out.pred_masks[0].sum() == (16 * 16 if crop else 128 * 128)


@pytest.mark.parametrize("num_convs", [1, 2])
def test_size_and_coefficients_at_the_peaks_are_the_dense_heads_values_there(num_convs):
    """Inference evaluates Size and Coefficients at the peak cells only (one separable conv:
    on their 3x3 patches; more: densely); they equal the dense maps there, borders included,
    with trained-looking BatchNorm statistics."""
    torch.manual_seed(0)
    model = build_model(tiny_blitzmask_cfg("MODEL.BLITZMASK.NUM_HEAD_CONVS", str(num_convs)))
    for module in model.head.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    head = model.head.eval()
    feature = torch.randn(head.size[0][0][0].in_channels, 6, 9)
    cells = torch.tensor([0, 8, 45, 53, 22, 22])  # the four corners, an inside cell twice
    with torch.no_grad():
        dense = head(feature[None])
        sizes, coefficients = head.at_cells(feature, cells)
    torch.testing.assert_close(sizes, dense.sizes[0].flatten(1)[:, cells].t())
    torch.testing.assert_close(coefficients, dense.coefficients[0].flatten(1)[:, cells].t())


def _losses_worker(rank, world_size, store, result):
    """One worker's BlitzMask losses on its share of a fixed batch (fixed head outputs: no
    network, so no BatchNorm statistics), averaged over the workers on rank 0."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world_size)
    model = build_model(tiny_blitzmask_cfg())
    boxes = ([((8, 8, 80, 80), 1), ((4, 92, 44, 124), 2), ((90, 4, 110, 24), 0)],
             [((20, 24, 60, 60), 2)], [((8, 10, 40, 30), 0), ((70, 70, 120, 110), 1)], [])
    share = slice(rank * len(boxes) // world_size, (rank + 1) * len(boxes) // world_size)
    maps = HeadOutputs(*(m[share] for m in _fixed_maps(len(boxes))))
    losses = model.losses(maps, [x["instances"] for x in batch_with_masks(boxes[share])])
    averaged = {}
    for key, value in losses.items():
        value = value.detach().clone()
        dist.all_reduce(value)
        averaged[key] = value / world_size
    if rank == 0:
        torch.save(averaged, result)
    dist.destroy_process_group()


@pytest.mark.ddp
def test_two_workers_average_the_losses_of_one(tmp_path):
    """The instance counts that normalise every loss are averaged over the workers, so the mean
    of two workers' losses (what DDP's averaged gradients follow) is the one-worker loss, though
    the halves of the batch hold 4 and 2 objects."""
    results = {}
    for world_size in (1, 2):
        results[world_size] = tmp_path / f"losses_{world_size}.pt"
        mp.spawn(_losses_worker, nprocs=world_size,
                 args=(world_size, tmp_path / f"store_{world_size}", results[world_size]))
    one, two = (torch.load(results[n], weights_only=True) for n in (1, 2))
    assert sorted(one) == sorted(LOSSES)
    for key in LOSSES:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)


def test_an_unknown_mask_crop_names_the_key_and_choices():
    with pytest.raises(ValueError, match=r"MODEL\.BLITZMASK\.MASK_CROP must be one of box, none"):
        build_model(tiny_blitzmask_cfg("MODEL.BLITZMASK.MASK_CROP", "boxes"))
