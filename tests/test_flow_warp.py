"""rtinst.modeling.layers.flow_warp.warp: zero flow, whole-pixel shifts against torch.roll,
half-pixel shifts and the border by hand, per-pixel flow, ONNX (opset 17) parity."""
import numpy as np
import pytest
import torch

from rtinst.modeling.layers import warp


def features(seed=0, shape=(2, 3, 7, 9)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def constant_flow(x, dx, dy):
    flow = torch.zeros(x.shape[0], 2, *x.shape[2:])
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def test_zero_flow_is_the_identity():
    x = features()
    assert torch.allclose(warp(x, torch.zeros(2, 2, 7, 9)), x, atol=1e-6)


@pytest.mark.parametrize("dx, dy", [(2, 0), (0, -1), (-3, 2)])
def test_whole_pixel_shift_is_a_roll_away_from_the_border(dx, dy):
    """out[y, x] = in[y + dy, x + dx]: torch.roll by (-dy, -dx), where that does not wrap."""
    x = features()
    out = warp(x, constant_flow(x, dx, dy))
    rolled = torch.roll(x, shifts=(-dy, -dx), dims=(2, 3))
    rows = slice(max(0, -dy), 7 - max(0, dy))
    cols = slice(max(0, -dx), 9 - max(0, dx))
    assert torch.allclose(out[..., rows, cols], rolled[..., rows, cols], atol=1e-5)
    # what comes from beyond the map is 0
    beyond = torch.ones_like(out, dtype=torch.bool)
    beyond[..., rows, cols] = False
    assert out[beyond].abs().max() < 1e-5


def test_half_pixel_shift_averages_the_neighbours():
    x = torch.tensor([[[[0.0, 2.0, 6.0, 10.0]]]])
    out = warp(x, constant_flow(x, 0.5, 0.0))
    # the last pixel is half outside: half of 10 and half of 0
    assert out.flatten().tolist() == pytest.approx([1.0, 4.0, 8.0, 5.0], abs=1e-5)


def test_flow_is_per_pixel():
    x = features(shape=(1, 1, 4, 5))
    flow = torch.zeros(1, 2, 4, 5)
    flow[0, 0, 1, 2] = 2.0  # only pixel (1, 2) looks 2 columns right
    flow[0, 1, 3, 0] = -3.0  # only pixel (3, 0) looks 3 rows up
    expected = x.clone()
    expected[0, 0, 1, 2] = x[0, 0, 1, 4]
    expected[0, 0, 3, 0] = x[0, 0, 0, 0]
    assert torch.allclose(warp(x, flow), expected, atol=1e-5)


def test_mismatched_flow_is_named():
    with pytest.raises(ValueError, match=r"flow \(2, 2, 7, 8\) for features \(2, 3, 7, 9\)"):
        warp(features(), torch.zeros(2, 2, 7, 8))


def test_onnx_export_matches_pytorch(tmp_path):
    import onnxruntime

    x = features()
    flow = torch.randn(2, 2, 7, 9, generator=torch.Generator().manual_seed(1)) * 3

    class Warp(torch.nn.Module):
        def forward(self, x, flow):
            return warp(x, flow)

    path = tmp_path / "warp.onnx"
    torch.onnx.export(Warp(), (x, flow), str(path), input_names=["features", "flow"],
                      opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, = session.run(None, {"features": x.numpy(), "flow": flow.numpy()})
    np.testing.assert_allclose(got, warp(x, flow).numpy(), atol=1e-5, rtol=1e-5)
