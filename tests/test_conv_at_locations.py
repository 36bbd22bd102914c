"""``conv2d_at_locations``: a size-keeping conv evaluated at chosen locations equals the dense
conv there, borders included; convs that do not keep the size are refused by name."""
import pytest
import torch
from torch import nn

from rtinst.modeling.layers import check_size_keeping, conv2d_at_locations


@pytest.mark.parametrize("kernel_size, groups", [(1, 1), (3, 1), (5, 1), ((3, 1), 1), (3, 6)])
def test_equals_the_dense_conv_at_every_location_and_at_the_borders(kernel_size, groups):
    torch.manual_seed(0)
    sizes = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    out_channels = 6 if groups == 6 else 7  # groups 6: depthwise
    conv = nn.Conv2d(6, out_channels, kernel_size, padding=tuple(k // 2 for k in sizes),
                     groups=groups)
    feature = torch.randn(6, 5, 9)
    dense = conv(feature[None])[0].flatten(1).t()  # (H * W, out_channels)
    everywhere = torch.arange(5 * 9)
    corners_twice = torch.tensor([0, 8, 36, 44, 44, 0])
    with torch.no_grad():
        for inds in (everywhere, corners_twice, everywhere[:0]):
            torch.testing.assert_close(conv2d_at_locations(conv, feature, inds),
                                       dense[inds].detach(), rtol=1e-6, atol=1e-6)


def test_hand_computed_3x3_sum_at_a_corner():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9.0).reshape(1, 1, 3, 3))
        conv.bias.fill_(0.5)
        feature = torch.ones(1, 4, 4)
        # top-left corner: only the bottom-right 2 x 2 of the kernel sees the map: 4+5+7+8
        assert conv2d_at_locations(conv, feature, torch.tensor([0])).item() == 24.5


@pytest.mark.parametrize("conv", [
    nn.Conv2d(4, 4, 3),                                  # no padding: shrinks the map
    nn.Conv2d(4, 4, 3, padding=1, stride=2),
    nn.Conv2d(4, 4, 3, padding=2, dilation=2),
    nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    nn.Conv2d(4, 4, 2, padding=1),                       # even kernel
    nn.Linear(4, 4),
])
def test_convs_that_do_not_keep_the_size_are_refused(conv):
    with pytest.raises(TypeError, match="the_top_layer must be a size-keeping nn.Conv2d"):
        check_size_keeping(conv, "the_top_layer")
    check_size_keeping(nn.Conv2d(4, 4, 3, padding=1), "the_top_layer")
    check_size_keeping(nn.Conv2d(4, 4, 3, padding=1, groups=4), "the_top_layer")  # depthwise
