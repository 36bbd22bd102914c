"""OneStageDetector + FCOS end to end on a tiny MobileNetV2-FPN model (CPU, 64-128 px images)."""
import numpy as np
import pytest
import torch
from tiny_models import SMALL_BOXES, synthetic_batch, tiny_fcos_cfg
from torch import nn

from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.visualizer import Visualizer
from rtinst.modeling import OneStageDetector

LOSS_NAMES = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = build_model(tiny_fcos_cfg())
    assert isinstance(model, OneStageDetector)
    return model


def test_training_returns_the_three_finite_losses(model):
    model.train()
    losses = model(synthetic_batch(SMALL_BOXES, size=64))
    assert set(losses) == LOSS_NAMES
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())


def test_images_without_annotations_train(model):
    model.train()
    model.zero_grad()
    losses = model(synthetic_batch(([], []), size=64))
    assert set(losses) == LOSS_NAMES
    assert losses["loss_fcos_loc"].item() == 0 and losses["loss_fcos_ctr"].item() == 0
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.proposal_generator.fcos_head.cls_logits.weight.grad.abs().sum() > 0

    mixed = model(synthetic_batch(([], SMALL_BOXES[1]), size=64))
    assert all(torch.isfinite(v) for v in mixed.values())


def test_inference_returns_instances_at_the_original_size(model):
    model.eval()
    inputs = [
        {"image": torch.rand(3, 64, 48) * 255, "height": 128, "width": 96},
        {"image": torch.rand(3, 40, 64) * 255},  # no original size given: the input size
    ]
    with torch.no_grad():
        outputs = model(inputs)
    assert [o["instances"].image_size for o in outputs] == [(128, 96), (40, 64)]
    for output in outputs:
        instances = output["instances"]
        assert isinstance(instances.pred_boxes, Boxes)
        assert len(instances) <= tiny_fcos_cfg().MODEL.FCOS.POST_NMS_TOPK_TEST
        height, width = instances.image_size
        boxes = instances.pred_boxes.tensor
        assert (boxes >= 0).all()
        assert (boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all()
        assert instances.scores.shape == instances.pred_classes.shape == (len(instances),)


def test_proposals_positives_and_box_features_in_training():
    cfg = tiny_fcos_cfg()
    cfg.MODEL.FCOS.YIELD_PROPOSAL = True
    cfg.MODEL.FCOS.YIELD_BOX_FEATURES = True
    cfg.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.0  # keep candidates even before any training
    cfg.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 7
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = synthetic_batch(SMALL_BOXES, size=64)
    images = model.preprocess_image(batch)
    features = model.backbone(images.tensor)
    gt = [x["instances"] for x in batch]
    top_module = nn.Conv2d(cfg.MODEL.FPN.OUT_CHANNELS, 5, kernel_size=3, padding=1)

    results, losses = model.proposal_generator(images, features, gt, top_module=top_module)
    assert set(losses) == LOSS_NAMES
    assert set(results) == {"proposals", "positives", "box_features"}

    proposals = results["proposals"]
    assert len(proposals) == 2 and all(len(p) == 7 for p in proposals)
    assert all(p.has("proposal_boxes") and not p.scores.requires_grad for p in proposals)

    positives = results["positives"]
    assert isinstance(positives, Instances) and len(positives) > 0
    assert set(positives.im_inds.tolist()) == {0, 1}
    # image 1's only box is the second box of the batch
    assert (positives.gt_inds == positives.im_inds).all()
    assert (positives.labels == torch.tensor([0, 2])[positives.im_inds]).all()
    assert positives.top_feats.shape == (len(positives), 5) and positives.top_feats.requires_grad
    for field in ("fpn_levels", "locations", "reg_targets", "ctrness_targets"):
        assert len(positives.get(field)) == len(positives)
    assert ((positives.ctrness_targets > 0) & (positives.ctrness_targets <= 1)).all()
    # a positive location lies inside its box
    boxes = torch.cat([g.gt_boxes.tensor for g in gt])[positives.gt_inds]
    x, y = positives.locations.unbind(1)
    assert ((x > boxes[:, 0]) & (x < boxes[:, 2]) & (y > boxes[:, 1]) & (y < boxes[:, 3])).all()

    assert list(results["box_features"]) == cfg.MODEL.FCOS.IN_FEATURES


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_top_feat_at_inference_is_the_dense_top_module_at_each_detection(model, kernel_size,
                                                                        monkeypatch):
    model.eval()
    # every location a candidate: detections at all levels, up to the post-NMS top-k
    monkeypatch.setattr(model.proposal_generator.postprocess_test, "score_threshold", 0.0)
    batch = synthetic_batch(SMALL_BOXES, size=64) * 2
    top_module = nn.Conv2d(64, 4, kernel_size=kernel_size, padding=kernel_size // 2)
    with torch.no_grad():
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        results, losses = model.proposal_generator(images, features, top_module=top_module)
        towers = model.proposal_generator.fcos_head(
            [features[f] for f in model.proposal_generator.in_features])[-1]
    assert losses == {}
    assert all(len(r) > 0 for r in results)
    assert len(set(torch.cat([r.fpn_levels for r in results]).tolist())) > 1
    for i, instances in enumerate(results):
        dense = [top_module(tower[i:i + 1])[0].flatten(1).t() for tower in towers]
        expected = torch.stack([dense[level][index] for level, index in
                                zip(instances.fpn_levels.tolist(),
                                    instances.location_inds.tolist())]).reshape(-1, 4)
        torch.testing.assert_close(instances.top_feat, expected, rtol=1e-6, atol=1e-6)


def test_top_module_that_does_not_keep_the_size_is_refused_at_inference(model):
    model.eval()
    batch = synthetic_batch(SMALL_BOXES, size=64)
    with torch.no_grad(), pytest.raises(TypeError, match="top_module must be a size-keeping"):
        images = model.preprocess_image(batch)
        model.proposal_generator(images, model.backbone(images.tensor),
                                 top_module=nn.Conv2d(64, 4, kernel_size=3))  # no padding


def test_default_predictor_and_visualizer():
    cfg = tiny_fcos_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 128
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    image = np.random.RandomState(0).randint(0, 255, (80, 100, 3), dtype=np.uint8)
    instances = DefaultPredictor(cfg)(image)["instances"]
    assert instances.image_size == (80, 100) and len(instances) > 0
    drawing = Visualizer(image[:, :, ::-1]).draw_instance_predictions(instances.to("cpu"))
    assert drawing.get_image().shape == (80, 100, 3)
