"""Pure PyTorch / torchvision / faster-coco-eval stand-in for detectron2 v0.6's compiled ``_C``.

It is installed as ``detectron2/_C.py`` by ``third_party/detectron2_py/build_wheel.py``.
Every entry point that v0.6's Python code calls keeps v0.6's signature:

* deformable convolution (``deform_conv_*``, ``modulated_deform_conv_*``): torchvision's
  ``deform_conv2d``, with gradients from autograd, written into v0.6's in-place output buffers;
* fast COCO evaluation (``InstanceAnnotation``, ``COCOevalEvaluateImages``,
  ``COCOevalAccumulate``): faster-coco-eval's C++ extension, adapted to v0.6's call convention;
* rotated-box ops (``box_iou_rotated``, ``nms_rotated``, ``roi_align_rotated_*``): not provided;
  calling one raises ``NotImplementedError`` that names the op.
"""
from dataclasses import dataclass

import torch
from torchvision.ops import deform_conv2d

__all__ = [
    "deform_conv_forward",
    "deform_conv_backward_input",
    "deform_conv_backward_filter",
    "modulated_deform_conv_forward",
    "modulated_deform_conv_backward",
    "InstanceAnnotation",
    "COCOevalEvaluateImages",
    "COCOevalAccumulate",
    "box_iou_rotated",
    "nms_rotated",
    "roi_align_rotated_forward",
    "roi_align_rotated_backward",
    "get_compiler_version",
    "get_cuda_version",
    "has_cuda",
]

IS_PURE_PYTHON = True


def get_compiler_version():
    return "none (pure-Python detectron2._C from rtinst)"


def get_cuda_version():
    return "none (pure-Python detectron2._C from rtinst)"


def has_cuda():
    """No compiled CUDA kernels here; torchvision's own ops run on the GPU."""
    return False


# --------------------------------------------------------------------------- deformable conv
def _check_groups(input, weight, offset, group, deformable_group, kernel_h, kernel_w):
    if input.shape[1] != weight.shape[1] * group:
        raise ValueError(
            f"deform conv: input has {input.shape[1]} channels but weight {tuple(weight.shape)} "
            f"with groups={group} expects {weight.shape[1] * group}"
        )
    expected = 2 * deformable_group * kernel_h * kernel_w
    if offset.shape[1] != expected:
        raise ValueError(
            f"deform conv: offset has {offset.shape[1]} channels, expected {expected} "
            f"(2 x deformable_groups={deformable_group} x {kernel_h}x{kernel_w})"
        )


def _deform(input, offset, weight, bias, mask, stride, padding, dilation):
    return deform_conv2d(
        input, offset, weight, bias=bias, stride=stride, padding=padding, dilation=dilation, mask=mask
    )


def deform_conv_forward(
    input, weight, offset, output, columns, ones,
    kW, kH, dW, dH, padW, padH, dilationW, dilationH, group, deformable_group, im2col_step,
):
    _check_groups(input, weight, offset, group, deformable_group, kH, kW)
    out = _deform(input, offset, weight, None, None, (dH, dW), (padH, padW), (dilationH, dilationW))
    output.resize_(out.shape).copy_(out)
    return output


def _grads(fn, tensors, grad_output):
    leaves = [t.detach().requires_grad_(True) for t in tensors]
    with torch.enable_grad():
        out = fn(*leaves)
        return torch.autograd.grad(out, leaves, grad_output, allow_unused=True)


def deform_conv_backward_input(
    input, offset, gradOutput, gradInput, gradOffset, weight, columns,
    kW, kH, dW, dH, padW, padH, dilationW, dilationH, group, deformable_group, im2col_step,
):
    _check_groups(input, weight, offset, group, deformable_group, kH, kW)
    w = weight.detach()
    g_in, g_off = _grads(
        lambda x, o: _deform(x, o, w, None, None, (dH, dW), (padH, padW), (dilationH, dilationW)),
        (input, offset),
        gradOutput,
    )
    gradInput.copy_(g_in)
    gradOffset.copy_(g_off)


def deform_conv_backward_filter(
    input, offset, gradOutput, gradWeight, columns, ones,
    kW, kH, dW, dH, padW, padH, dilationW, dilationH, group, deformable_group, scale, im2col_step,
):
    _check_groups(input, gradWeight, offset, group, deformable_group, kH, kW)
    x, o = input.detach(), offset.detach()
    (g_w,) = _grads(
        lambda w: _deform(x, o, w, None, None, (dH, dW), (padH, padW), (dilationH, dilationW)),
        (gradWeight,),
        gradOutput,
    )
    gradWeight.add_(g_w, alpha=scale)


def modulated_deform_conv_forward(
    input, weight, bias, ones, offset, mask, output, columns,
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
    group, deformable_group, with_bias,
):
    _check_groups(input, weight, offset, group, deformable_group, kernel_h, kernel_w)
    out = _deform(
        input, offset, weight, bias if with_bias else None, mask,
        (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w),
    )
    output.resize_(out.shape).copy_(out)
    return output


def modulated_deform_conv_backward(
    input, weight, bias, ones, offset, mask, columns,
    grad_input, grad_weight, grad_bias, grad_offset, grad_mask, grad_output,
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
    group, deformable_group, with_bias,
):
    _check_groups(input, weight, offset, group, deformable_group, kernel_h, kernel_w)
    tensors = (input, offset, mask, weight) + ((bias,) if with_bias else ())
    grads = _grads(
        lambda x, o, m, w, *b: _deform(
            x, o, w, b[0] if b else None, m,
            (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w),
        ),
        tensors,
        grad_output,
    )
    for buf, g in zip((grad_input, grad_offset, grad_mask, grad_weight, grad_bias), grads):
        buf.copy_(g)


# --------------------------------------------------------------------------- fast COCO eval
@dataclass
class InstanceAnnotation:
    """v0.6's per-instance record: ``InstanceAnnotation(id, score, area, is_crowd, ignore)``."""

    id: int
    score: float
    area: float
    is_crowd: bool
    ignore: bool


def _faster_coco_eval():
    try:
        import faster_coco_eval.faster_eval_api_cpp as ext
    except ImportError as e:
        raise ImportError(
            "detectron2's fast COCO evaluation (COCOeval_opt) needs the package "
            "'faster-coco-eval' (pip install faster-coco-eval)"
        ) from e
    return ext


def _to_dataset(ext, per_image_per_category):
    dataset = ext.Dataset()
    for img_index, per_category in enumerate(per_image_per_category):
        for cat_index, instances in enumerate(per_category):
            for inst in instances:
                dataset.append(
                    float(img_index),
                    float(cat_index),
                    {
                        "id": int(inst.id),
                        "score": float(inst.score),
                        "area": float(inst.area),
                        "iscrowd": int(inst.is_crowd),
                        "ignore": int(inst.ignore),
                    },
                )
    return dataset


def COCOevalEvaluateImages(area_ranges, max_detections, iou_thresholds, ious, gts, dts):
    """v0.6's call: per-image, per-category lists of ``InstanceAnnotation`` and IoU matrices.

    Images and categories are identified by their position in ``gts`` (v0.6 has already
    flattened categories when ``useCats`` is off), so both are passed to faster-coco-eval as
    index ranges with ``useCats=True``.
    """
    ext = _faster_coco_eval()
    num_images = len(gts)
    num_categories = len(gts[0]) if num_images else 0
    return ext.COCOevalEvaluateImages(
        area_ranges,
        max_detections,
        iou_thresholds,
        ious,
        _to_dataset(ext, gts),
        _to_dataset(ext, dts),
        [float(i) for i in range(num_images)],
        [float(c) for c in range(num_categories)],
        True,
    )


def COCOevalAccumulate(params, evaluations):
    return _faster_coco_eval().COCOevalAccumulate(params, evaluations)


# --------------------------------------------------------------------------- rotated boxes
def _rotated_unavailable(name):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"detectron2._C.{name}: rotated-box ops are not available in the pure-Python "
            "detectron2 build installed by rtinst. Install a compiled detectron2 to use them."
        )

    op.__name__ = name
    return op


box_iou_rotated = _rotated_unavailable("box_iou_rotated")
nms_rotated = _rotated_unavailable("nms_rotated")
roi_align_rotated_forward = _rotated_unavailable("roi_align_rotated_forward")
roi_align_rotated_backward = _rotated_unavailable("roi_align_rotated_backward")


def _register_torch_op():
    """v0.6's ``layers.nms_rotated`` calls ``torch.ops.detectron2.nms_rotated``; register it so
    that the call reaches the clear error above instead of torch's 'no such operator'."""
    if hasattr(torch.ops, "detectron2") and hasattr(torch.ops.detectron2, "nms_rotated"):
        return
    lib = torch.library.Library("detectron2", "DEF")
    lib.define("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms_rotated", nms_rotated, "CompositeExplicitAutograd")
    return lib


_TORCH_LIBRARY = _register_torch_op()
