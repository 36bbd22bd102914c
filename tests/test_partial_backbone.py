"""rtinst.modeling.backbone.partial: running a backbone up to res3 and then on from res4 gives
exactly the features of one whole forward (MobileNetV2, EfficientNet-Lite, VoVNet, Detectron2's
ResNet); bad stage names and backbones without stages are named."""
import pytest
import torch
from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.resnet import BasicStem

from rtinst.modeling.backbone import (
    EfficientNetLite,
    MobileNetV2,
    VoVNet,
    named_stages,
    run_stages,
    vovnet_spec,
)

RES = ("res2", "res3", "res4", "res5")


def resnet18():
    stages = ResNet.make_default_stages(18, norm="BN")
    return ResNet(BasicStem(norm="BN"), stages, out_features=list(RES))


BACKBONES = {
    "MobileNetV2": (lambda: MobileNetV2(out_features=RES, norm="BN"), "res3", "res4"),
    "EfficientNetLite": (lambda: EfficientNetLite(out_features=RES), "res3", "res4"),
    "VoVNet": (lambda: VoVNet(vovnet_spec("V-19-slim-eSE"), norm="BN"), "stage3", "stage4"),
    "ResNet": (resnet18, "res3", "res4"),
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_up_to_res3_then_on_equals_one_forward(name):
    build, stop, start = BACKBONES[name]
    torch.manual_seed(0)
    backbone = build().eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        whole = backbone(images)
        first = run_stages(backbone, images, stop=stop)
        rest = run_stages(backbone, first[stop], start=start)
        everything = run_stages(backbone, images)
    names = [n for n, _ in named_stages(backbone)]
    assert names[0] == "stem" and list(first) == names[:names.index(stop) + 1]
    assert list(rest) == names[names.index(start):]
    assert set(whole) <= set(first) | set(rest)
    for feature, value in whole.items():
        assert torch.equal((first if feature in first else rest)[feature], value), feature
        assert torch.equal(everything[feature], value), feature


def test_bad_stage_names_and_backbones_without_stages_are_named():
    backbone = MobileNetV2(out_features=("res3",), norm="BN")
    with pytest.raises(ValueError, match="MobileNetV2 has no stage stop='res5'; its stages are "
                                         "stem, res2, res3"):
        run_stages(backbone, torch.zeros(1, 3, 32, 32), stop="res5")
    with pytest.raises(ValueError, match="start='res3' comes after stop='res2'"):
        run_stages(backbone, torch.zeros(1, 3, 32, 32), start="res3", stop="res2")
    with pytest.raises(TypeError, match="Sequential has no list of stages"):
        run_stages(torch.nn.Sequential(), torch.zeros(1))
