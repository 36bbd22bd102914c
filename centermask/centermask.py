"""CenterMask (Lee & Park, CVPR 2020, Fig. 2) as a Detectron2 meta-architecture: Detectron2's
``GeneralizedRCNN`` with FCOS as the proposal generator, whose detections are the final boxes,
and ``CenterROIHeads`` adding SAG-Mask masks (and mask scores) to them."""
from typing import Dict, List

import torch

from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances

__all__ = ["CenterMask"]


def _as_proposals(detections: Instances) -> Instances:
    """FCOS training detections -> R-CNN proposals (``proposal_boxes``, ``objectness_logits``)."""
    return Instances(
        detections.image_size,
        proposal_boxes=detections.pred_boxes,
        objectness_logits=detections.scores.logit(eps=1e-6),
    )


@META_ARCH_REGISTRY.register()
class CenterMask(GeneralizedRCNN):
    """Backbone -> FCOS (boxes, classes, scores) -> CenterROIHeads (masks).

    Inference is ``GeneralizedRCNN.inference``: FCOS's top ``POST_NMS_TOPK_TEST`` detections go
    to the RoI heads, and masks are pasted at the original resolution."""

    @classmethod
    def from_config(cls, cfg):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.FCOS.YIELD_PROPOSAL = True  # FCOS hands its training detections on
        return super().from_config(cfg)

    def forward(self, batched_inputs: List[Dict]):
        """
        Returns:
            training: FCOS losses (``loss_fcos_*``), ``loss_mask`` and, with mask scoring,
            ``loss_maskiou``; inference: per image {"instances": Instances} with ``pred_boxes``,
            ``scores``, ``pred_classes``, ``pred_masks`` (and ``mask_scores``).
        """
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        results, detector_losses = self.proposal_generator(images, features, gt_instances)
        proposals = [_as_proposals(d) for d in results["proposals"]]
        _, mask_losses = self.roi_heads(images, features, proposals, gt_instances)
        return {**detector_losses, **mask_losses}

    @property
    def export_output_names(self):
        names = ("boxes", "scores", "classes", "masks")
        return names + (("mask_scores",) if self.roi_heads.maskiou_head is not None else ())

    def export_outputs(self, images: torch.Tensor, image_size: torch.Tensor):
        """One normalised (1, 3, H, W) canvas's detections, R x R mask probabilities (and mask
        scores), its picture in the top-left ``image_size`` (``rtinst.export.AnySizePipeline``)."""
        features = self.backbone(images)
        batch = ImageList(images, [(image_size[0], image_size[1])])
        detections, _ = self.proposal_generator(batch, features)
        d = self.roi_heads.forward_with_given_boxes(features, detections)[0]
        outputs = (d.pred_boxes.tensor, d.scores, d.pred_classes, d.pred_masks[:, 0])
        return outputs + ((d.mask_scores,) if d.has("mask_scores") else ())
