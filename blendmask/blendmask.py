"""BlendMask (Chen et al., CVPR 2020) as a Detectron2 meta-architecture (Sec. 3.1, Fig. 2):

    backbone (+FPN) -> FCOS detector, with the top layer on its box tower predicting K*M*M
                       attentions per location
                    -> bottom module predicting K bases (+ auxiliary semantic loss)
                    -> blender: pooled bases x attentions -> R x R masks

Training uses the ground-truth box of every positive FCOS location as its proposal; inference
blends the top-D FCOS detections (``MODEL.FCOS.POST_NMS_TOPK_TEST``) with their own boxes.
"""
from typing import Dict, List

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList

from rtinst.modeling.layers import normal_init
from rtinst.modeling.meta_arch import OneStageDetector, postprocess_detections

from .basis_module import build_basis_module
from .blender import Blender

__all__ = ["BlendMask"]


def _feature_shapes(backbone) -> Dict[str, ShapeSpec]:
    """The backbone's outputs (p3, ...) and, for an FPN, its bottom-up network's (res3, ...)."""
    shapes = dict(backbone.output_shape())
    bottom_up = getattr(backbone, "bottom_up", None)
    if bottom_up is not None:
        shapes = {**bottom_up.output_shape(), **shapes}
    return shapes


@META_ARCH_REGISTRY.register()
class BlendMask(OneStageDetector):
    """FCOS + bottom module + top layer + blender; outputs ``Instances`` with ``pred_masks``."""

    @configurable
    def __init__(self, *, basis_module: nn.Module, blender: Blender, top_layer: nn.Module,
                 mask_threshold: float = 0.5, **kwargs):
        """
        Args:
            basis_module: the bottom module (``build_basis_module``).
            blender: merges bases and attentions.
            top_layer: conv on the FCOS box tower predicting ``blender.attention_channels``.
            mask_threshold: probability above which a pasted mask pixel is foreground.
            kwargs: ``ProposalNetwork`` arguments (backbone, proposal_generator, pixel mean/std).
        """
        super().__init__(**kwargs)
        self.basis_module = basis_module
        self.blender = blender
        self.top_layer = top_layer
        self.mask_threshold = mask_threshold
        # the bottom module reads bottom-up features (res3, ...) that the FPN does not return
        fpn_outputs = set(self.backbone.output_shape())
        self._reads_bottom_up = not set(basis_module.in_features) <= fpn_outputs

    @classmethod
    def from_config(cls, cfg):
        args = super().from_config(cfg)
        backbone = args["backbone"]
        basis_module = build_basis_module(cfg, _feature_shapes(backbone))
        blender = Blender(cfg, basis_stride=basis_module.out_stride)
        tower_channels = backbone.output_shape()[cfg.MODEL.FCOS.IN_FEATURES[0]].channels
        top_layer = normal_init(nn.Conv2d(tower_channels, blender.attention_channels, 3, padding=1))
        return {
            **args,
            "basis_module": basis_module,
            "blender": blender,
            "top_layer": top_layer,
            "mask_threshold": cfg.MODEL.BLENDMASK.MASK_THRESHOLD,
        }

    def _features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Backbone outputs, plus the bottom-up network's when the bottom module reads them."""
        if not self._reads_bottom_up:
            return self.backbone(x)
        bottom_up = {}
        handle = self.backbone.bottom_up.register_forward_hook(
            lambda module, inputs, outputs: bottom_up.update(outputs)
        )
        try:
            features = self.backbone(x)
        finally:
            handle.remove()
        return {**bottom_up, **features}

    def forward(self, batched_inputs: List[Dict]):
        """
        Returns:
            training: losses of FCOS (``loss_fcos_*``), the bottom module
            (``loss_basis_semantic``) and the blender (``loss_mask``); inference: per image
            ``{"instances": Instances}`` with ``pred_masks`` at the original resolution.
        """
        images = self.preprocess_image(batched_inputs)
        features = self._features(images.tensor)
        gt_instances = None
        if self.training:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        bases, basis_losses = self.basis_module(features, gt_instances)
        results, detector_losses = self.proposal_generator(
            images, features, gt_instances, top_module=self.top_layer
        )
        if self.training:
            mask_losses = self.blender.loss(bases, results["positives"], gt_instances)
            return {**detector_losses, **basis_losses, **mask_losses}
        self.blender(bases, results)
        return postprocess_detections(results, batched_inputs, images.image_sizes,
                                      self.mask_threshold)

    export_output_names = ("boxes", "scores", "classes", "masks")

    def export_outputs(self, images: torch.Tensor, image_size: torch.Tensor):
        """One normalised (1, 3, H, W) canvas's detections and R x R mask probabilities, its
        picture in the top-left ``image_size`` (``rtinst.export.AnySizePipeline``)."""
        features = self._features(images)
        bases, _ = self.basis_module(features, None)
        batch = ImageList(images, [(image_size[0], image_size[1])])
        results, _ = self.proposal_generator(batch, features, None, top_module=self.top_layer)
        self.blender(bases, results)
        detections = results[0]
        return (detections.pred_boxes.tensor, detections.scores, detections.pred_classes,
                detections.pred_masks[:, 0])
