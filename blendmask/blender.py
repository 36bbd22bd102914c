"""The blender (BlendMask Sec. 3.2): merges the bottom module's K bases with each instance's
K x M x M top-level attention into an R x R mask.

    r_d  = RoIPool_{RxR}(B, p_d)                  Eq. 1  (RoIAlign, sampling ratio 1, aligned)
    a'_d = interpolate_{MxM -> RxR}(a_d)          Eq. 2  (bilinear or nearest)
    s_d  = softmax_K(a'_d)                        Eq. 3
    m_d  = sum_k s_d^k o r_d^k                    Eq. 4

With K = 1 both sides go through a sigmoid instead (Table 3), so m_d is a probability rather
than a logit. M = 1 is YOLACT's weighted sum; one-hot attentions with nearest interpolation are
FCIS's assembly (Table 1).
"""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, Instances

from rtinst.utils.comm import mean_over_workers

__all__ = ["Blender", "blend"]

TOP_INTERP_MODES = ("bilinear", "nearest")


def blend(rois: torch.Tensor, attentions: torch.Tensor, top_interp: str) -> torch.Tensor:
    """Eq. 2-4 for D instances.

    Args:
        rois: (D, K, R, R) pooled bases r_d.
        attentions: (D, K, M, M) attention logits a_d.
        top_interp: "bilinear" or "nearest" (Eq. 2).

    Returns:
        (D, R, R) mask logits m_d, or mask probabilities when K = 1.
    """
    resolution = rois.shape[-2:]
    if attentions.shape[-2:] != resolution:
        align = {"align_corners": False} if top_interp == "bilinear" else {}
        attentions = F.interpolate(attentions, size=resolution, mode=top_interp, **align)
    if rois.shape[1] == 1:
        return (attentions.sigmoid() * rois.sigmoid()).squeeze(1)
    return (F.softmax(attentions, dim=1) * rois).sum(dim=1)


class Blender(nn.Module):
    """Pools the bases with each instance's box and blends them with its attention."""

    @configurable
    def __init__(
        self,
        *,
        num_bases: int,
        attn_size: int,
        bottom_resolution: int,
        top_interp: str,
        pooler_type: str,
        sampling_ratio: int,
        basis_stride: int,
        instance_loss_weight: float = 1.0,
        centerness_weighted_loss: bool = True,
    ):
        """
        Args:
            num_bases: K; attn_size: M; bottom_resolution: R.
            top_interp: "bilinear" or "nearest" (Eq. 2).
            pooler_type: "ROIAlignV2" (aligned bilinear) or "ROIPool" (nearest), Eq. 1.
            sampling_ratio: RoIAlign sampling points per bin (the paper: 1).
            basis_stride: output stride of the bases (the pooler's scale is its inverse).
            instance_loss_weight: weight of the mask loss.
            centerness_weighted_loss: weigh each positive location's mask loss by its FCOS
                centerness target (as the reference implementation, AdelaiDet, does), so
                that the central locations whose attentions are used at inference count most;
                False: a plain mean over the locations.
        """
        super().__init__()
        if top_interp not in TOP_INTERP_MODES:
            raise ValueError(f"MODEL.BLENDMASK.TOP_INTERP must be one of {TOP_INTERP_MODES}, "
                             f"got {top_interp!r}")
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.bottom_resolution = bottom_resolution
        self.top_interp = top_interp
        self.instance_loss_weight = instance_loss_weight
        self.centerness_weighted_loss = centerness_weighted_loss
        self.pooler = ROIPooler(
            output_size=bottom_resolution,
            scales=(1.0 / basis_stride,),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )

    @classmethod
    def from_config(cls, cfg, basis_stride: int):
        bcfg = cfg.MODEL.BLENDMASK
        return {
            "num_bases": cfg.MODEL.BASIS_MODULE.NUM_BASES,
            "attn_size": bcfg.ATTN_SIZE,
            "bottom_resolution": bcfg.BOTTOM_RESOLUTION,
            "top_interp": bcfg.TOP_INTERP,
            "pooler_type": bcfg.POOLER_TYPE,
            "sampling_ratio": bcfg.POOLER_SAMPLING_RATIO,
            "basis_stride": basis_stride,
            "instance_loss_weight": bcfg.INSTANCE_LOSS_WEIGHT,
            "centerness_weighted_loss": bcfg.CENTERNESS_WEIGHTED_LOSS,
        }

    @property
    def attention_channels(self) -> int:
        """K * M * M: what the top layer predicts per location."""
        return self.num_bases * self.attn_size**2

    def pool(self, bases: torch.Tensor, boxes: List[Boxes]) -> torch.Tensor:
        """Eq. 1: (sum_i len(boxes[i]), K, R, R) crops of image i's bases for each of its boxes."""
        return self.pooler([bases], boxes)

    def merge(self, rois: torch.Tensor, attentions: torch.Tensor) -> torch.Tensor:
        """Eq. 2-4 for rois (D, K, R, R) and flat attentions (D, K*M*M)."""
        attentions = attentions.view(-1, self.num_bases, self.attn_size, self.attn_size)
        return blend(rois, attentions, self.top_interp)

    def forward(self, bases: torch.Tensor, detections: List[Instances]) -> None:
        """Inference: sets ``pred_masks`` (D, 1, R, R) probabilities on each image's detections
        from their ``pred_boxes`` and ``top_feat`` (attentions)."""
        masks = self.merge(
            self.pool(bases, [d.pred_boxes for d in detections]),
            cat([d.top_feat for d in detections]),
        )
        if self.num_bases > 1:
            masks = masks.sigmoid()
        # shape[0], not len(): inside a traced ONNX graph the count is the graph's own
        for d, m in zip(detections, masks.split([d.top_feat.shape[0] for d in detections])):
            d.pred_masks = m.unsqueeze(1)

    def loss(self, bases: torch.Tensor, positives: Instances, gt_instances: List[Instances]):
        """Mask loss (BCE on R x R) of every positive location of the batch, each blended from
        its own attention and its ground-truth box (the paper's training proposals); averaged
        over the locations, weighted by their centerness targets if ``centerness_weighted_loss``.

        ``positives`` carries ``gt_inds`` (into the concatenation of all images' ground truth),
        ``top_feats`` and ``ctrness_targets``; the bases are pooled once per ground-truth box,
        not per location.
        """
        if self.centerness_weighted_loss:  # before any return: every worker must join the mean
            weight_sum = mean_over_workers(positives.ctrness_targets.sum()).clamp(min=1e-6)
        if len(positives) == 0:  # keep every input in the graph (DDP needs used parameters)
            return {"loss_mask": bases.sum() * 0 + positives.top_feats.sum() * 0}
        rois = self.pool(bases, [x.gt_boxes for x in gt_instances])
        targets = cat(
            [x.gt_masks.crop_and_resize(x.gt_boxes.tensor, self.bottom_resolution)
             for x in gt_instances]
        ).to(rois.dtype)
        masks = self.merge(rois[positives.gt_inds], positives.top_feats)
        targets = targets[positives.gt_inds]
        if self.num_bases > 1:
            pixel_losses = F.binary_cross_entropy_with_logits(masks, targets, reduction="none")
        else:
            pixel_losses = F.binary_cross_entropy(masks.clamp(1e-6, 1 - 1e-6), targets,
                                                  reduction="none")
        location_losses = pixel_losses.flatten(1).mean(dim=1)
        if self.centerness_weighted_loss:
            loss = (location_losses * positives.ctrness_targets).sum() / weight_sum
        else:
            loss = location_losses.mean()
        return {"loss_mask": loss * self.instance_loss_weight}
