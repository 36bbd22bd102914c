"""The FCOS head shared by all FPN levels (Sec. 3.1, Fig. 2; center-ness Sec. 3.3).

Two towers of 3x3 conv + norm + ReLU (optionally after a tower shared by both) feed three 3x3
predictors: C class logits and the center-ness logit, and the 4 distances (l, t, r, b). The
regression goes through a learnable per-level scalar (Sec. 3.2: exp(s_i x)), or, with
normalised targets (the "improved FCOS" of the paper's repository), relu(s_i x) in stride units.
"""
from typing import List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, get_norm

from ..layers import DeformConv3x3, normal_init, prior_probability_bias

__all__ = ["Scale", "PerLevel", "FCOSHead"]


class Scale(nn.Module):
    """A learnable scalar multiplier (s_i of Sec. 3.2)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init_value]))

    def forward(self, x):
        return x * self.scale


class PerLevel(nn.ModuleList):
    """One module per FPN level, called with the level: the batch norms of a BN/SyncBN tower
    (the convs are shared across levels but the levels' statistics differ, so each keeps its
    own, as in AdelaiDet's checkpoints) and, once those are folded for inference
    (``rtinst.modeling.inference_fusion``), the per-level copies of the conv before them."""

    def forward(self, x, level: int):
        return self[level](x)


def _build_tower(num_convs, channels, norm, num_levels, deformable_last):
    """[conv, norm, ReLU] * num_convs as an nn.Sequential (indices as in AdelaiDet checkpoints)."""
    layers = []
    for index in range(num_convs):
        if deformable_last and index == num_convs - 1:
            conv = DeformConv3x3(channels, channels)
        else:
            conv = normal_init(nn.Conv2d(channels, channels, kernel_size=3, padding=1))
        layers.append(conv)
        if norm in ("BN", "SyncBN"):
            layers.append(PerLevel([get_norm(norm, channels) for _ in range(num_levels)]))
        elif norm:
            layers.append(get_norm(norm, channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _run_tower(tower: nn.Sequential, x, level: int):
    for layer in tower:
        x = layer(x, level) if isinstance(layer, PerLevel) else layer(x)
    return x


class FCOSHead(nn.Module):
    """Per-level predictions of FCOS; parameter names match AdelaiDet's ``fcos_head``."""

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_levels: int,
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        use_scale: bool = True,
        use_deformable: bool = False,
        centerness_on_reg: bool = True,
        norm_reg_targets: bool = True,
        prior_prob: float = 0.01,
    ):
        """
        Args:
            in_channels: channels of every input level.
            num_levels: number of FPN levels (one Scale / per-level BN each).
            norm: "GN" (32 groups), "BN", "SyncBN" (one per level) or "" (none) in the towers.
            use_deformable: make the last conv of each tower deformable.
            centerness_on_reg: predict center-ness from the box tower (else the class tower).
            norm_reg_targets: predict relu(s x) distances in units of the stride instead of
                exp(s x) pixels.
            prior_prob: initial foreground probability of the classifier (RetinaNet init).
        """
        super().__init__()
        self.norm_reg_targets = norm_reg_targets
        self.centerness_on_reg = centerness_on_reg
        tower_args = dict(channels=in_channels, norm=norm, num_levels=num_levels,
                          deformable_last=use_deformable)
        self.share_tower = _build_tower(num_share_convs, **tower_args)
        self.cls_tower = _build_tower(num_cls_convs, **tower_args)
        self.bbox_tower = _build_tower(num_box_convs, **tower_args)

        self.cls_logits = nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, kernel_size=3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, kernel_size=3, padding=1)
        normal_init(self.cls_logits, bias=prior_probability_bias(prior_prob))
        normal_init(self.bbox_pred)
        normal_init(self.ctrness)
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)]) if use_scale else None

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        channels = {shape.channels for shape in input_shape}
        if len(channels) != 1:
            raise ValueError(f"FCOS head needs equal channels on all levels, got {channels}")
        fcfg = cfg.MODEL.FCOS
        return {
            "in_channels": channels.pop(),
            "num_levels": len(input_shape),
            "num_classes": fcfg.NUM_CLASSES,
            "num_cls_convs": fcfg.NUM_CLS_CONVS,
            "num_box_convs": fcfg.NUM_BOX_CONVS,
            "num_share_convs": fcfg.NUM_SHARE_CONVS,
            "norm": fcfg.NORM,
            "use_scale": fcfg.USE_SCALE,
            "use_deformable": fcfg.USE_DEFORMABLE,
            "centerness_on_reg": fcfg.CENTERNESS_ON_REG,
            "norm_reg_targets": fcfg.NORM_REG_TARGETS,
            "prior_prob": fcfg.PRIOR_PROB,
        }

    def forward(self, features: List[torch.Tensor], top_module: Optional[nn.Module] = None):
        """
        Args:
            features: per level, an (N, C, H_i, W_i) map.
            top_module: optional module applied to each level's box-tower output (e.g. BlendMask's
                attention predictor).

        Returns:
            per-level lists: class logits (N, K, H, W), distances (N, 4, H, W) (stride units when
            ``norm_reg_targets``, else pixels), center-ness logits (N, 1, H, W), ``top_module``
            outputs (empty list without it), box-tower features (N, C, H, W).
        """
        logits, bbox_reg, ctrness, top_feats, bbox_towers = [], [], [], [], []
        for level, feature in enumerate(features):
            feature = _run_tower(self.share_tower, feature, level)
            cls_tower = _run_tower(self.cls_tower, feature, level)
            bbox_tower = _run_tower(self.bbox_tower, feature, level)

            logits.append(self.cls_logits(cls_tower))
            ctrness.append(self.ctrness(bbox_tower if self.centerness_on_reg else cls_tower))
            reg = self.bbox_pred(bbox_tower)
            if self.scales is not None:
                reg = self.scales[level](reg)
            bbox_reg.append(F.relu(reg) if self.norm_reg_targets else torch.exp(reg))
            bbox_towers.append(bbox_tower)
            if top_module is not None:
                top_feats.append(top_module(bbox_tower))
        return logits, bbox_reg, ctrness, top_feats, bbox_towers
