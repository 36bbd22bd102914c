"""The separable FPN (BlitzMask Sec. 2.1): stride-4 output, top-down path, mobile layers only."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rtinst.modeling.backbone import EfficientNetLite, MobileNetV2, SeparableFPN


def test_p2_at_stride_4_sums_every_coarser_level():
    bottom_up = MobileNetV2(out_features=("res2", "res3", "res4", "res5"), norm="BN")
    fpn = SeparableFPN(bottom_up, ["res2", "res3", "res4", "res5"], 16, ["p2", "p5"]).eval()
    assert {k: (v.channels, v.stride) for k, v in fpn.output_shape().items()} == {
        "p2": (16, 4), "p5": (16, 32)}
    assert fpn.size_divisibility == 32
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = fpn(x)
        assert out["p2"].shape == (1, 16, 16, 24) and out["p5"].shape == (1, 16, 2, 3)
        # P2 = separable conv of (lateral(res2) + upsampled P3), P3 built from res3, P4, P5 alike
        features = bottom_up(x)
        top = None
        for lateral, name in reversed(list(zip(fpn.laterals, ["res2", "res3", "res4", "res5"]))):
            level = lateral(features[name])
            if top is not None:
                level = level + F.interpolate(top, size=level.shape[-2:], mode="bilinear")
            top = level
        assert torch.allclose(out["p2"], fpn.outputs["p2"](top), atol=1e-5)


def test_only_depthwise_pointwise_and_1x1_convolutions():
    fpn = SeparableFPN(EfficientNetLite("lite0", out_features=("res2", "res3", "res4", "res5")),
                       ["res2", "res3", "res4", "res5"], 32)
    convs = [m for name, m in fpn.named_modules() if isinstance(m, nn.Conv2d)
             and not name.startswith("bottom_up")]
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in fpn.modules())
    for conv in convs:
        assert conv.kernel_size == (1, 1) or conv.groups == conv.in_channels


def test_bad_feature_names_are_named():
    bottom_up = MobileNetV2(out_features=("res3", "res4", "res5"))
    with pytest.raises(ValueError, match=r"IN_FEATURES \['res2'\].*OUT_FEATURES"):
        SeparableFPN(bottom_up, ["res2", "res3"], 16)
    with pytest.raises(ValueError, match=r"OUT_FEATURES \['p2'\]"):
        SeparableFPN(bottom_up, ["res3", "res4", "res5"], 16, ["p2"])
