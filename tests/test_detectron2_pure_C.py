"""The pure-Python ``detectron2._C`` against reference values (third_party/detectron2_py/_C.py)."""
import contextlib
import copy
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2 import _C
from detectron2.evaluation.fast_eval_api import COCOeval_opt


def test_installed_C_is_the_pure_python_one():
    assert getattr(_C, "IS_PURE_PYTHON", False), _C.__file__


@pytest.mark.slow
@pytest.mark.parametrize(
    "order", ["import detectron2.layers, detectron2.evaluation", "import detectron2.evaluation, detectron2.layers"]
)
def test_import_in_any_order(order):
    subprocess.run([sys.executable, "-c", order], check=True)


def _deform_args(weight, stride=1, pad=1, dil=1, groups=1, dgroups=1):
    kh, kw = weight.shape[2:]
    return (kw, kh, stride, stride, pad, pad, dil, dil, groups, dgroups)


def test_deform_conv_with_zero_offset_is_a_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    offset = torch.zeros(2, 18, 9, 7, dtype=torch.float64)
    out = x.new_empty(0)
    _C.deform_conv_forward(x, w, offset, out, x.new_empty(0), x.new_empty(0), *_deform_args(w), 64)
    torch.testing.assert_close(out, F.conv2d(x, w, padding=1))


def test_deform_conv_integer_offset_shifts_the_sampling_grid():
    """A constant offset of +1 px in x for every tap samples the input shifted left by one."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 6, 8, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    offset = torch.zeros(1, 18, 6, 8, dtype=torch.float64)
    offset[:, 1::2] = 1.0  # (dy, dx) pairs: dx = 1
    out = x.new_empty(0)
    _C.deform_conv_forward(x, w, offset, out, x.new_empty(0), x.new_empty(0), *_deform_args(w), 64)
    # tap (ky, kx) at output (i, j) reads x[i + ky, j + kx + 1], zero outside the image
    torch.testing.assert_close(out, F.conv2d(F.pad(x, (0, 2, 1, 1)), w))


def test_deform_conv_backward_matches_autograd_of_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)  # groups=2
    offset = torch.zeros(2, 18, 8, 8, dtype=torch.float64)
    grad_out = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    F.conv2d(x, w, padding=1, groups=2).backward(grad_out)
    args = _deform_args(w, groups=2)
    g_in, g_off, g_w = torch.zeros_like(x), torch.zeros_like(offset), torch.zeros_like(w)
    _C.deform_conv_backward_input(x.detach(), offset, grad_out, g_in, g_off, w.detach(), x.new_empty(0), *args, 64)
    _C.deform_conv_backward_filter(x.detach(), offset, grad_out, g_w, x.new_empty(0), x.new_empty(0), *args, 1, 64)
    torch.testing.assert_close(g_in, x.grad)
    torch.testing.assert_close(g_w, w.grad)
    assert g_off.abs().sum() > 0  # offsets receive a gradient from the bilinear sampling


def test_modulated_deform_conv_mask_scales_each_tap():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    offset = torch.zeros(1, 18, 5, 5, dtype=torch.float64)
    mask = torch.full((1, 9, 5, 5), 0.5, dtype=torch.float64)
    out = x.new_empty(0)
    _C.modulated_deform_conv_forward(
        x, w, b, x.new_empty(0), offset, mask, out, x.new_empty(0), 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, True
    )
    expected = F.conv2d(x, 0.5 * w, b, padding=1)
    torch.testing.assert_close(out, expected)

    grad_out = torch.randn_like(expected)
    expected.backward(grad_out)
    grads = [torch.zeros_like(t) for t in (x, w, b, offset, mask)]
    _C.modulated_deform_conv_backward(
        x.detach(), w.detach(), b.detach(), x.new_empty(0), offset, mask, x.new_empty(0),
        grads[0], grads[1], grads[2], grads[3], grads[4], grad_out,
        3, 3, 1, 1, 1, 1, 1, 1, 1, 1, True,
    )
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], w.grad)
    torch.testing.assert_close(grads[2], b.grad)


def test_deform_conv_channel_mismatch_is_a_clear_error():
    x = torch.randn(1, 4, 5, 5)
    w = torch.randn(2, 3, 3, 3)
    with pytest.raises(ValueError, match="input has 4 channels"):
        _C.deform_conv_forward(
            x, w, torch.zeros(1, 18, 5, 5), x.new_empty(0), x.new_empty(0), x.new_empty(0), *_deform_args(w), 64
        )


def _random_coco(seed):
    rng = np.random.RandomState(seed)
    images = [{"id": i, "width": 120, "height": 100} for i in range(1, 7)]
    cats = [{"id": c, "name": str(c)} for c in (1, 2, 3)]
    anns, dets = [], []
    for im in images:
        for _ in range(5):
            x, y = rng.uniform(0, 70, 2)
            w, h = rng.uniform(3, 45, 2)
            c = int(rng.choice([1, 2, 3]))
            anns.append(
                {"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                 "area": w * h, "iscrowd": int(rng.rand() < 0.15)}
            )
            for _ in range(2):
                dets.append(
                    {"image_id": im["id"], "category_id": c if rng.rand() < 0.8 else 1,
                     "bbox": [x + rng.randn() * 3, y + rng.randn() * 3, w * rng.uniform(0.8, 1.2), h],
                     "score": float(rng.rand())}
                )
    gt = COCO()
    gt.dataset = {"images": images, "categories": cats, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
    return gt, dt


@pytest.mark.parametrize("use_cats", [1, 0])
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_cocoeval_equals_pycocotools(seed, use_cats):
    gt, dt = _random_coco(seed)
    stats = []
    for cls in (COCOeval, COCOeval_opt):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = cls(gt, copy.deepcopy(dt), "bbox")
            ev.params.useCats = use_cats
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats.append(ev.stats)
    assert stats[0][0] > 0.05  # a non-trivial case
    np.testing.assert_allclose(stats[1], stats[0], atol=1e-12)


def test_rotated_ops_raise_a_clear_error():
    from detectron2.layers import nms_rotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 30.0]])
    with pytest.raises(NotImplementedError, match="box_iou_rotated"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(NotImplementedError, match="nms_rotated"):
        nms_rotated(boxes, torch.ones(1), 0.5)
