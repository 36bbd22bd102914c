"""Inference-only speed-ups that keep the outputs (``optimize_for_inference``):

* every frozen (or eval-mode) BatchNorm folded into the convolution before it, as scale and shift
  of its weights and bias, so that a ResNet or VoVNet backbone stops paying one extra pass over
  each feature map per convolution (``fold_batch_norms``); a conv shared by the FPN levels and
  followed by one BatchNorm per level (BlendMask-RT's head) becomes one folded copy per level;
* the weights in channels-last memory order, which oneDNN's CPU convolutions run without
  reordering every input and output (convolutions return channels-last when their weight is);
* the wide 3 x 3 convolutions, on CPU, by Winograd's F(4x4, 3x3) (``use_winograd_convs``),
  with a quarter of the multiplications of oneDNN's direct ones on CPUs without AVX-512.

The references (AdelaiDet, centermask2) run the norm after each conv in NCHW; optimised, the
features agree to float rounding only, which on the golden fixtures' seeded weights flips mask
pixels near 0.5 (IoU >= 0.96 with the reference's masks; one pixel of a 4-pixel mask) and the
order of near-tied detections. On trained FCOS, BlendMask and CenterMask (shapes_val) the COCO
AP is the same (``tools/optimized_inference_check.py``,
``benchmarks/optimized_inference_shapes_2026-12-07.json``), so rtinst's ``Predictor`` runs it on
CPU by default (``TEST.OPTIMIZE_FOR_INFERENCE``; False: as built, what the reference tests
compare). On this 2-core CPU: ResNet-50-FPN 0.51 -> 0.38 s at 512 x 640 by folding and
channels-last.
"""
import copy

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d

from .fcos.fcos_head import PerLevel
from .layers.winograd_conv import use_winograd_convs

__all__ = ["fold_batch_norms", "optimize_for_inference"]

_BATCH_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d, nn.SyncBatchNorm)  # SyncBN: BN at eval


def _foldable(norm: nn.Module) -> bool:
    return (isinstance(norm, _BATCH_NORMS) and getattr(norm, "running_var", None) is not None
            and getattr(norm, "weight", None) is not None)  # running statistics, affine


def _fold(conv: nn.Conv2d, norm: nn.Module) -> None:
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter(shift, requires_grad=False)


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each BatchNorm that follows a plain convolution (a
    Detectron2 ``Conv2d``'s ``norm``, or the next child of a ``nn.Sequential``; a ``PerLevel``
    of BatchNorms: into a ``PerLevel`` of copies of the conv) folded into it and replaced by
    ``nn.Identity``. Not for training: the copy's folded weights are frozen and
    its state dict no longer matches a checkpoint's."""
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        norm = getattr(module, "norm", None)
        if isinstance(module, nn.Conv2d) and _foldable(norm):
            _fold(module, norm)
            module.norm = None
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, norm = module._modules[first], module._modules[second]
                plain = (getattr(conv, "norm", None) is None
                         and getattr(conv, "activation", None) is None)
                if not (isinstance(conv, nn.Conv2d) and plain):
                    continue
                if _foldable(norm):
                    _fold(conv, norm)
                    module._modules[second] = nn.Identity()
                elif isinstance(norm, PerLevel) and all(_foldable(n) for n in norm):
                    copies = PerLevel([copy.deepcopy(conv) for _ in norm])
                    for level_conv, level_norm in zip(copies, norm):
                        _fold(level_conv, level_norm)
                    module._modules[first], module._modules[second] = copies, nn.Identity()
    return model


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with its BatchNorms folded, its weights channels-last and
    its wide 3 x 3 convolutions by Winograd's algorithm on CPU; for inference only (see
    ``fold_batch_norms``)."""
    return use_winograd_convs(fold_batch_norms(model).to(memory_format=torch.channels_last))
