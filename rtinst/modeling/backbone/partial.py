"""Running a contiguous range of a bottom-up backbone's stages, e.g. YolactEdge (Liu et al., ICRA
2021) computing only up to res3 on non-keyframes and res4-res5 from there on keyframes.

The stages are those of ``StagedBackbone.named_stages()`` (rtinst's MobileNetV2,
EfficientNet-Lite, VoVNet) or of Detectron2's ``ResNet`` (``stem``, ``stage_names``, ``stages``).
"""
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.modeling.backbone import ResNet
from torch import nn

from .staged import StagedBackbone

__all__ = ["named_stages", "run_stages"]


def named_stages(backbone: nn.Module) -> List[Tuple[str, nn.Module]]:
    """[(name, stage)] of ``backbone`` in the order its forward runs them, the stem first."""
    if isinstance(backbone, StagedBackbone):
        return backbone.named_stages()
    if isinstance(backbone, ResNet):
        return [("stem", backbone.stem)] + list(zip(backbone.stage_names, backbone.stages))
    raise TypeError(f"{type(backbone).__name__} has no list of stages to run in part (known: "
                    "rtinst's StagedBackbone and Detectron2's ResNet; for an FPN, pass its "
                    "bottom_up)")


def run_stages(backbone: nn.Module, x: torch.Tensor, start: Optional[str] = None,
               stop: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """{stage name: output} of ``backbone``'s stages from ``start`` to ``stop`` (both included;
    None: the first / the last), ``x`` being the input of ``start`` (the images for the stem, else
    the previous stage's output). Running up to a stage then on from the next one gives the
    outputs of one whole forward."""
    stages = named_stages(backbone)
    names = [name for name, _ in stages]
    for argument, name in (("start", start), ("stop", stop)):
        if name is not None and name not in names:
            raise ValueError(f"run_stages: {type(backbone).__name__} has no stage {argument}="
                             f"{name!r}; its stages are {', '.join(names)}")
    first = 0 if start is None else names.index(start)
    last = len(names) - 1 if stop is None else names.index(stop)
    if first > last:
        raise ValueError(f"run_stages: start={start!r} comes after stop={stop!r} in "
                         f"{type(backbone).__name__}'s stages {', '.join(names)}")
    outputs = {}
    for name, stage in stages[first:last + 1]:
        x = outputs[name] = stage(x)
    return outputs
