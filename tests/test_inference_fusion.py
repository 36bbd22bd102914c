"""optimize_for_inference: BatchNorms folded into their convolutions and channels-last weights
give the same features as the model as built (to float rounding), on a copy."""
import pytest
import torch
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d
from rtinst.modeling.inference_fusion import fold_batch_norms, optimize_for_inference


def _frozen_bn(channels, seed):
    g = torch.Generator().manual_seed(seed)
    norm = FrozenBatchNorm2d(channels)
    norm.weight.copy_(0.5 + torch.rand(channels, generator=g))
    norm.bias.copy_(torch.randn(channels, generator=g))
    norm.running_mean.copy_(torch.randn(channels, generator=g))
    norm.running_var.copy_(0.5 + torch.rand(channels, generator=g))
    return norm


def _model():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(8).eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 1.5)
    return nn.Sequential(
        Conv2d(3, 8, 3, padding=1, bias=False, norm=_frozen_bn(8, 1), activation=torch.relu),
        nn.Conv2d(8, 8, 3, padding=1), bn, nn.ReLU(),
        Conv2d(8, 4, 1, norm=nn.GroupNorm(2, 4)),  # not foldable: kept
    ).eval()


def test_folded_model_computes_the_same_features_and_leaves_the_original_alone():
    model = _model()
    x = torch.randn(2, 3, 17, 23)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batch_norms(model)
        optimized = optimize_for_inference(model)
        torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(optimized(x), expected, rtol=1e-5, atol=1e-5)
    assert folded[0].norm is None and isinstance(folded[2], nn.Identity)
    assert isinstance(folded[4].norm, nn.GroupNorm)
    assert optimized[1].weight.is_contiguous(memory_format=torch.channels_last)
    # the original keeps its norms and weights
    assert isinstance(model[0].norm, FrozenBatchNorm2d) and isinstance(model[2], nn.BatchNorm2d)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("norm", ["BN", "SyncBN"])  # SyncBN: BlendMask-RT's head and backbone
def test_per_level_batch_norms_of_a_shared_tower_fold_into_per_level_conv_copies(norm):
    from rtinst.modeling.fcos.fcos_head import FCOSHead, PerLevel

    torch.manual_seed(0)
    head = FCOSHead(in_channels=8, num_levels=3, num_classes=2, num_cls_convs=0,
                    num_box_convs=0, num_share_convs=2, norm=norm).eval()
    batch_norms = (nn.BatchNorm2d, nn.SyncBatchNorm)
    for module in head.share_tower.modules():
        if isinstance(module, batch_norms):  # levels with different statistics
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    features = [torch.randn(1, 8, s, s) for s in (16, 8, 4)]
    with torch.no_grad():
        expected = head(features)
        folded = optimize_for_inference(head)
        got = folded(features)
    for expected_level, got_level in zip(expected[:3], got[:3]):
        torch.testing.assert_close(got_level, expected_level, rtol=1e-5, atol=1e-5)
    convs = [m for m in folded.share_tower if isinstance(m, PerLevel)]
    assert len(convs) == 2 and all(len(c) == 3 and isinstance(c[0], nn.Conv2d) for c in convs)
    assert not any(isinstance(m, batch_norms) for m in folded.modules())
    assert all(isinstance(m, batch_norms) for m in head.share_tower[1])  # original intact
