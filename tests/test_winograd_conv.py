"""Winograd F(4x4, 3x3) convolution (rtinst.modeling.layers.winograd_conv): the same outputs as
the direct 3 x 3 convolution, at every border and tile boundary, and used only where it pays."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d
from rtinst.modeling.inference_fusion import optimize_for_inference
from rtinst.modeling.layers import winograd_conv
from rtinst.modeling.layers.winograd_conv import (
    WinogradConv2d,
    WinogradD2Conv2d,
    use_winograd,
    use_winograd_convs,
    winograd_conv3x3,
    winograd_kernel,
)


def test_ones_kernel_counts_the_pixels_of_each_3x3_window():
    # hand-computed: on a 5 x 6 map of ones, a 3 x 3 kernel of ones sums 4 pixels at a corner,
    # 6 on an edge and 9 inside (zero padding); 5 x 6 is not a whole number of 4 x 4 tiles
    x = torch.ones(1, 1, 5, 6)
    kernel = winograd_kernel(torch.ones(1, 1, 3, 3))
    expected = torch.tensor([[4, 6, 6, 6, 6, 4], [6, 9, 9, 9, 9, 6], [6, 9, 9, 9, 9, 6],
                             [6, 9, 9, 9, 9, 6], [4, 6, 6, 6, 6, 4]], dtype=torch.float32)
    out = winograd_conv3x3(x, kernel, torch.tensor([0.5]))
    torch.testing.assert_close(out[0, 0], expected + 0.5, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 8, 4, 4), (2, 16, 13, 9), (3, 5, 1, 7), (1, 24, 17, 30)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_equals_the_direct_convolution(shape, channels_last, with_bias):
    g = torch.Generator().manual_seed(0)
    n, cin, h, w = shape
    x = torch.randn(shape, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(12, cin, 3, 3, generator=g)
    bias = torch.randn(12, generator=g) if with_bias else None
    exact = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(),
                     padding=1)
    out = winograd_conv3x3(x, winograd_kernel(weight), bias)
    assert out.shape == (n, 12, h, w) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), exact, rtol=0, atol=2e-5 * exact.abs().max().item())


def test_bands_of_tile_rows_give_the_same_result(monkeypatch):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 23, 18, generator=g)
    kernel, bias = winograd_kernel(torch.randn(8, 8, 3, 3, generator=g)), torch.randn(8)
    whole = winograd_conv3x3(x, kernel, bias)
    monkeypatch.setattr(winograd_conv, "BAND", 2 * 5 * 8)  # one tile row (2 x 5 tiles) a band
    torch.testing.assert_close(winograd_conv3x3(x, kernel, bias), whole, rtol=0, atol=0)
    assert winograd_conv3x3(x[:, :, :8, :8], kernel, bias).is_contiguous(
        memory_format=torch.channels_last)


@pytest.mark.parametrize("channels,shape,expected", [
    ((256, 256), (1, 64, 80), True),  # FCOS tower on P3
    ((256, 256), (1, 8, 10), False),  # P6: too little work for the overhead
    ((64, 64), (1, 256, 320), False),  # too few channels per transformed value
    ((256, 80), (1, 64, 80), False),  # FCOS class logits
    ((256, 256), (50, 14, 14), True),  # CenterMask mask head on 50 RoIs
    ((128, 128), (50, 14, 14), False),  # CenterMask-Lite's: 14 x 14 fills 77% of the tiles
])
def test_used_where_it_was_measured_faster(channels, shape, expected):
    assert use_winograd(*channels, *shape) is expected


class _OwnConv(nn.Conv2d):
    pass


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(256, 256, 3, padding=1),
        Conv2d(256, 256, 3, padding=1, bias=False, norm=nn.GroupNorm(32, 256),
               activation=F.relu),
        nn.Conv2d(256, 256, 3, stride=2, padding=1),  # not size-keeping: left alone
        _OwnConv(256, 256, 3, padding=1),  # a subclass with its own behaviour: left alone
        nn.Conv2d(256, 64, 3, padding=1),  # too few output channels: left alone
    ).eval()


def test_use_winograd_convs_turns_only_the_wide_size_keeping_convolutions():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 256, 32, 40)
    with torch.no_grad():
        expected = model(x)
        small_expected = model(x[:, :, :8, :8])
        winograd = use_winograd_convs(model)
        assert [type(m) for m in winograd] == [WinogradConv2d, WinogradD2Conv2d, nn.Conv2d,
                                               _OwnConv, nn.Conv2d]
        torch.testing.assert_close(winograd(x), expected, rtol=0,
                                   atol=2e-5 * expected.abs().max().item())
        # maps too small for Winograd take the direct convolution: bit for bit the same
        torch.testing.assert_close(winograd(x[:, :, :8, :8]), small_expected, rtol=0, atol=0)
    # each Winograd conv made its transform at its first large map; none is checkpointed
    assert all(m.winograd_kernel is not None for m in winograd[:2])
    assert winograd.state_dict().keys() == state.keys()
    for key, value in winograd.state_dict().items():
        assert torch.equal(value, state[key])


def test_optimize_for_inference_uses_winograd_on_wide_convolutions():
    model = _model()
    x = torch.randn(1, 256, 32, 40)
    with torch.no_grad():
        expected = model(x)
        optimized = optimize_for_inference(model)
        torch.testing.assert_close(optimized(x), expected, rtol=0,
                                   atol=2e-5 * expected.abs().max().item())
    assert isinstance(optimized[0], WinogradConv2d) and type(model[0]) is nn.Conv2d


def test_transforms_made_at_first_use_also_serve_outside_inference_mode():
    conv = use_winograd_convs(nn.Sequential(nn.Conv2d(256, 256, 3, padding=1)).eval())[0]
    x = torch.randn(1, 256, 32, 40)
    with torch.inference_mode():
        conv(x[:, :, :8, :8])  # a small map: the direct convolution, no transform made
        assert conv.winograd_kernel is None
        in_inference_mode = conv(x)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), in_inference_mode, rtol=0, atol=0)
