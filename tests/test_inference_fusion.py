"""optimize_for_inference: BatchNorms folded into their convolutions and channels-last weights
give the same features as the model as built (to float rounding), on a copy."""
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
