"""BlendMask's bottom module (Sec. 3.1): predicts the K bases B (N x K x H/s x W/s) shared by all
instances, and the auxiliary semantic segmentation loss on its finest input ("+semantic",
Table 7).

Two decoders are registered in ``BASIS_MODULE_REGISTRY`` (``MODEL.BASIS_MODULE.NAME``):

* ``ProtoNet`` -- the Proto-FPN of Sec. 4.1/4.2, rtinst's ``ProtoNet`` (YOLACT's protonet,
  ``rtinst/modeling/layers/protonet.py``) on the input levels (P3, P4, P5) with ``CONVS_DIM``
  channels and ``NUM_CONVS`` convs. Output stride: half the finest input's. Parameter names
  match AdelaiDet's (``refine``, ``tower``, ``seg_head``), so its checkpoints load.
* ``DeepLabV3Plus`` -- the DeepLabV3+ decoder on a fine and a coarse input (C3, C5 or P3, P5):
  the fine one reduced by a 1x1 conv to ``DECODER_LOW_LEVEL_CHANNELS``, the coarse one projected
  to ``CONVS_DIM`` and upsampled to it, concatenated, ``NUM_CONVS`` 3x3 convs, 1x1 conv to K.
  Output stride: the fine input's.
"""
from typing import Dict, List, Optional

import torch
from fvcore.nn import weight_init
from torch import nn
from torch.nn import functional as F

from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Instances
from detectron2.utils.registry import Registry
from rtinst.modeling import layers

__all__ = ["BASIS_MODULE_REGISTRY", "BasisModule", "ProtoNet", "DeepLabV3Plus",
           "build_basis_module", "semantic_targets"]

BASIS_MODULE_REGISTRY = Registry("BASIS_MODULE")
BASIS_MODULE_REGISTRY.__doc__ = "BlendMask bottom modules: (cfg, input_shape) -> BasisModule"

IGNORE_LABEL = -1  # padding outside the image


def _conv(in_channels, out_channels, kernel_size, norm):
    """conv (no bias when normalised, He fan-out init) + norm + ReLU: children 0, 1, 2."""
    return layers.ConvNormAct(in_channels, out_channels, kernel_size, norm=norm,
                              init=weight_init.c2_msra_fill)


SEMANTIC_TARGET_STYLES = ("reference", "centred")


def semantic_targets(gt_instances: List[Instances], padded_size, stride: int, num_classes: int,
                     style: str = "centred"):
    """(N, H/stride, W/stride) labels: 1 + class of the instance covering the pixel, 0 for
    background.

    ``style`` "reference" (AdelaiDet's thing maps, ``prepare_thing_sem_from_instance.py``, as
    its loss reads them): later instances painted over earlier ones, the top-left pixel of each
    cell (nearest 1/stride downsampling), the padding background (0). "centred": the smallest
    instance on top, each cell's centre pixel, the padding ``IGNORE_LABEL``.
    """
    if style not in SEMANTIC_TARGET_STYLES:
        raise ValueError(f"MODEL.BASIS_MODULE.SEMANTIC_TARGETS must be one of "
                         f"{SEMANTIC_TARGET_STYLES}, got {style!r}")
    reference = style == "reference"
    height, width = padded_size
    labels = []
    for instances in gt_instances:
        canvas = torch.full((height, width), 0 if reference else IGNORE_LABEL, dtype=torch.long,
                            device=instances.gt_classes.device)
        h, w = instances.image_size
        canvas[:h, :w] = 0
        if len(instances):
            masks = instances.gt_masks
            if not isinstance(masks, BitMasks):
                masks = BitMasks.from_polygon_masks(masks, h, w)
            masks = masks.tensor.to(canvas.device)
            order = (range(len(masks)) if reference
                     else masks.flatten(1).sum(dim=1).argsort(descending=True).tolist())
            for i in order:
                canvas[:h, :w][masks[i]] = int(instances.gt_classes[i]) + 1
        offset = 0 if reference else stride // 2
        labels.append(canvas[offset::stride, offset::stride])
    return torch.stack(labels)


def _in_features(cfg, input_shape: Dict[str, ShapeSpec]) -> List[str]:
    in_features = list(cfg.MODEL.BASIS_MODULE.IN_FEATURES)
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(f"MODEL.BASIS_MODULE.IN_FEATURES {missing} are not produced by the "
                         f"backbone (it has {sorted(input_shape)})")
    return in_features


class BasisModule(nn.Module):
    """Common part: the optional semantic head on the finest input and its loss. Subclasses
    predict the bases (``predict_bases``) and set ``out_stride``; keyword arguments beyond
    ``cfg`` and ``input_shape`` go to the next class of the subclass's bases (cooperative
    ``__init__``), e.g. rtinst's ``ProtoNet``."""

    def __init__(self, cfg, input_shape: Dict[str, ShapeSpec], **decoder_args):
        super().__init__(**decoder_args)
        bcfg = cfg.MODEL.BASIS_MODULE
        self.in_features = _in_features(cfg, input_shape)
        self.num_bases = bcfg.NUM_BASES
        self.loss_on = bcfg.LOSS_ON
        self.num_classes = bcfg.NUM_CLASSES
        self.loss_weight = bcfg.LOSS_WEIGHT
        finest = input_shape[self.in_features[0]]
        self.semantic_stride = finest.stride
        self.semantic_target_style = bcfg.SEMANTIC_TARGETS
        if self.loss_on:
            dim, norm = bcfg.CONVS_DIM, bcfg.NORM
            self.seg_head = nn.Sequential(
                *_conv(finest.channels, dim, 3, norm),
                *_conv(dim, dim, 3, norm),
                layers.normal_init(nn.Conv2d(dim, self.num_classes + 1, kernel_size=1)),
            )

    out_stride: int  # stride of the bases

    def predict_bases(self, features: List[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, features: Dict[str, torch.Tensor],
                gt_instances: Optional[List[Instances]] = None):
        """Returns (bases (N, K, H/s, W/s), losses); losses has ``loss_basis_semantic`` in
        training when ``LOSS_ON``."""
        inputs = [features[f] for f in self.in_features]
        bases = self.predict_bases(inputs)
        losses = {}
        if self.training and self.loss_on:
            logits = self.seg_head(inputs[0])
            padded = [s * self.semantic_stride for s in logits.shape[-2:]]
            labels = semantic_targets(gt_instances, padded, self.semantic_stride, self.num_classes,
                                      self.semantic_target_style)
            loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL)
            losses["loss_basis_semantic"] = loss * self.loss_weight
        return bases, losses


@BASIS_MODULE_REGISTRY.register()
class ProtoNet(BasisModule, layers.ProtoNet):
    """rtinst's (YOLACT's) ProtoNet on ``IN_FEATURES`` predicting the K bases, with the semantic
    head."""

    def __init__(self, cfg, input_shape: Dict[str, ShapeSpec]):
        bcfg = cfg.MODEL.BASIS_MODULE
        in_features = _in_features(cfg, input_shape)
        super().__init__(cfg, input_shape,
                         in_channels=[input_shape[f].channels for f in in_features],
                         channels=bcfg.CONVS_DIM, num_convs=bcfg.NUM_CONVS,
                         num_prototypes=bcfg.NUM_BASES, norm=bcfg.NORM)
        self.out_stride = input_shape[in_features[0]].stride // 2

    def predict_bases(self, features):
        return layers.ProtoNet.forward(self, features)


@BASIS_MODULE_REGISTRY.register()
class DeepLabV3Plus(BasisModule):
    def __init__(self, cfg, input_shape: Dict[str, ShapeSpec]):
        super().__init__(cfg, input_shape)
        if len(self.in_features) != 2:
            raise ValueError("MODEL.BASIS_MODULE.IN_FEATURES of DeepLabV3Plus are two features "
                             f"(fine, coarse), e.g. ['p3', 'p5']; got {self.in_features}")
        fine, coarse = (input_shape[f] for f in self.in_features)
        bcfg = cfg.MODEL.BASIS_MODULE
        dim, norm = bcfg.CONVS_DIM, bcfg.NORM
        low_channels = bcfg.DECODER_LOW_LEVEL_CHANNELS
        self.low_level = _conv(fine.channels, low_channels, 1, norm)
        self.high_level = _conv(coarse.channels, dim, 1, norm)
        tower = [_conv(low_channels + dim, dim, 3, norm)]
        tower += [_conv(dim, dim, 3, norm) for _ in range(bcfg.NUM_CONVS - 1)]
        predictor = layers.normal_init(nn.Conv2d(dim, self.num_bases, kernel_size=1))
        self.tower = nn.Sequential(*tower, predictor)
        self.out_stride = fine.stride

    def predict_bases(self, features):
        fine, coarse = features
        low = self.low_level(fine)
        high = layers.upsample_to(self.high_level(coarse), low)
        return self.tower(torch.cat((low, high), dim=1))


def build_basis_module(cfg, input_shape: Dict[str, ShapeSpec]) -> BasisModule:
    name = cfg.MODEL.BASIS_MODULE.NAME
    if name not in BASIS_MODULE_REGISTRY:
        raise ValueError(f"MODEL.BASIS_MODULE.NAME {name!r} is not one of "
                         f"{sorted(k for k, _ in BASIS_MODULE_REGISTRY)}")
    return BASIS_MODULE_REGISTRY.get(name)(cfg, input_shape)
