"""CenterMask's RoI heads (Sec. 2.2, 2.6): only a mask branch, on the FCOS detections.

Training: the FCOS detections (top ``POST_NMS_TOPK_TRAIN``, score > ``INFERENCE_TH_TRAIN``) plus
the ground-truth boxes are matched and sampled as in Mask R-CNN; the foreground ones feed the
SAG-Mask head (mask targets as Mask R-CNN's) and, with ``MODEL.MASKIOU_ON``, the MaskIoU head.
Inference: the top ``POST_NMS_TOPK_TEST`` detections get a mask (and a ``mask_scores``).
Features are pooled with the scale-adaptive assignment (Eq. 2) or FPN's (Eq. 1).
"""
from typing import Dict, List, Optional

import torch

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads import (
    ROI_HEADS_REGISTRY,
    ROIHeads,
    build_mask_head,
    select_foreground_proposals,
)
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.structures import ImageList, Instances

from .mask_scoring import MaskIoUHead, mask_iou_inference, mask_iou_loss, mask_iou_targets
from .roi_assignment import ScaleAdaptiveROIPooler

__all__ = ["CenterROIHeads"]


def _set_mask_probabilities(mask_logits: torch.Tensor, instances: List[Instances]) -> None:
    """Detectron2's ``mask_rcnn_inference``: each detection's ``pred_masks`` (1, R, R), the
    probabilities of its class's mask, with each image's count read from its tensors (inside a
    traced ONNX graph the count is the graph's own; ``len`` would freeze the tracing example's)."""
    classes = cat([i.pred_classes for i in instances])
    if mask_logits.shape[1] > 1:  # class-specific masks
        rows = torch.arange(classes.shape[0], device=classes.device)
        mask_logits = mask_logits[rows, classes][:, None]
    counts = [i.pred_classes.shape[0] for i in instances]
    for probs, image_instances in zip(mask_logits.sigmoid().split(counts), instances):
        image_instances.pred_masks = probs


@ROI_HEADS_REGISTRY.register()
class CenterROIHeads(ROIHeads):
    """Mask (and mask-scoring) branch of CenterMask; boxes and classes come from FCOS."""

    @configurable
    def __init__(self, *, in_features: List[str], mask_pooler: ScaleAdaptiveROIPooler,
                 mask_head: torch.nn.Module, maskiou_head: Optional[MaskIoUHead] = None,
                 maskiou_weight: float = 1.0, clamp_iou: bool = False,
                 maskiou_targets: str = "reference", detach_maskiou_inputs: bool = False,
                 **kwargs):
        """
        Args:
            in_features: pyramid levels pooled from, fine to coarse (e.g. p3, p4, p5).
            mask_pooler: RoIAlign over those levels (Eq. 2 or Eq. 1 assignment).
            mask_head: SAG-Mask (or any Detectron2 mask head with ``layers``).
            maskiou_head: None disables mask scoring; maskiou_weight: its loss weight.
            clamp_iou: clamp the predicted IoU to [0, 1] in ``mask_scores``.
            maskiou_targets: ``mask_iou_targets``'s style ("reference" or "rescaled").
            detach_maskiou_inputs: the mask-scoring loss does not reach the RoI features and the
                mask head (centermask2 lets it).
            kwargs: ``ROIHeads``'s (num_classes, batch_size_per_image, positive_fraction,
                proposal_matcher, proposal_append_gt).
        """
        super().__init__(**kwargs)
        self.in_features = list(in_features)
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.maskiou_head = maskiou_head
        self.maskiou_weight = maskiou_weight
        self.clamp_iou = clamp_iou
        self.maskiou_targets = maskiou_targets
        self.detach_maskiou_inputs = detach_maskiou_inputs

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        args = super().from_config(cfg)
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"MODEL.ROI_HEADS.IN_FEATURES {in_features} have different widths")
        mcfg = cfg.MODEL.ROI_MASK_HEAD
        resolution = mcfg.POOLER_RESOLUTION
        roi_shape = ShapeSpec(channels=channels.pop(), width=resolution, height=resolution)
        maskiou_head = None
        if cfg.MODEL.MASKIOU_ON:
            maskiou_head = MaskIoUHead(cfg, roi_shape)  # reads the pooled RoI features
        return {
            **args,
            "in_features": in_features,
            "mask_pooler": ScaleAdaptiveROIPooler(
                output_size=resolution,
                scales=tuple(1.0 / input_shape[f].stride for f in in_features),
                sampling_ratio=mcfg.POOLER_SAMPLING_RATIO,
                pooler_type=mcfg.POOLER_TYPE,
                assign_criterion=mcfg.ASSIGN_CRITERION,
            ),
            "mask_head": build_mask_head(cfg, roi_shape),
            "maskiou_head": maskiou_head,
            "maskiou_weight": cfg.MODEL.MASKIOU_LOSS_WEIGHT,
            "clamp_iou": cfg.MODEL.ROI_MASKIOU_HEAD.CLAMP_IOU,
            "maskiou_targets": cfg.MODEL.ROI_MASKIOU_HEAD.TARGETS,
            "detach_maskiou_inputs": cfg.MODEL.ROI_MASKIOU_HEAD.DETACH_INPUTS,
        }

    def _pool(self, features: Dict[str, torch.Tensor], instances: List[Instances], boxes: str):
        return self.mask_pooler(
            [features[f] for f in self.in_features],
            [x.get(boxes) for x in instances],
            [x.image_size for x in instances],
        )

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor],
                proposals: List[Instances], targets: Optional[List[Instances]] = None):
        """
        Args:
            proposals: training: per image ``proposal_boxes`` (+ ``objectness_logits``);
                inference: the detections (``pred_boxes``, ``pred_classes``, ``scores``).
            targets: ground truth (training only).

        Returns:
            (instances, losses): inference adds ``pred_masks`` (R x R probabilities) and, with
            mask scoring, ``mask_scores``; training returns {} and {"loss_mask"[, "loss_maskiou"]}.
        """
        del images
        if not self.training:
            return self.forward_with_given_boxes(features, proposals), {}
        proposals = self.label_and_sample_proposals(proposals, targets)
        foreground, _ = select_foreground_proposals(proposals, self.num_classes)
        roi_features = self._pool(features, foreground, "proposal_boxes")
        mask_logits = self.mask_head.layers(roi_features)
        losses = {"loss_mask": mask_rcnn_loss(mask_logits, foreground) * self.mask_head.loss_weight}
        if self.maskiou_head is not None:
            losses["loss_maskiou"] = self._maskiou_loss(roi_features, mask_logits, foreground)
        return [], losses

    def _maskiou_loss(self, roi_features, mask_logits, foreground):
        """Mask scoring loss of the foreground RoIs, on the mask of their ground-truth class."""
        if len(mask_logits) == 0:  # keep the head in the graph (DDP needs used parameters)
            return sum(p.sum() * 0 for p in self.maskiou_head.parameters())
        labels = cat([p.gt_classes for p in foreground])
        rows = torch.arange(len(labels), device=labels.device)
        class_agnostic = mask_logits.shape[1] == 1
        class_logits = mask_logits[rows, 0 if class_agnostic else labels]
        mask_probs = class_logits.sigmoid()[:, None]
        if self.detach_maskiou_inputs:
            roi_features, mask_probs = roi_features.detach(), mask_probs.detach()
        pred_iou = self.maskiou_head(roi_features, mask_probs)
        targets = mask_iou_targets(class_logits, foreground, self.maskiou_targets)
        return mask_iou_loss(pred_iou[rows, labels], targets) * self.maskiou_weight

    def forward_with_given_boxes(self, features: Dict[str, torch.Tensor],
                                 instances: List[Instances]) -> List[Instances]:
        """Masks (and mask scores) for given detections with ``pred_boxes``/``pred_classes``."""
        roi_features = self._pool(features, instances, "pred_boxes")
        mask_logits = self.mask_head.layers(roi_features)
        _set_mask_probabilities(mask_logits, instances)
        if self.maskiou_head is None:
            return instances
        mask_probs = cat([i.pred_masks for i in instances])
        mask_iou_inference(self.maskiou_head(roi_features, mask_probs), instances, self.clamp_iou)
        return instances
