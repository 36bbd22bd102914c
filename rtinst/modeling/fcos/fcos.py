"""FCOS (Tian et al., ICCV 2019) as a Detectron2 proposal generator: head -> targets/losses in
training, head -> post-processing at inference (Sec. 3)."""
from typing import Dict, List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat, nonzero_tuple
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.structures import ImageList, Instances

from ..layers import check_size_keeping, conv2d_at_locations
from .fcos_head import FCOSHead
from .fcos_inference import FCOSPostprocessor
from .fcos_losses import FCOSLosses
from .fcos_targets import FCOSTargetAssigner, compute_locations

__all__ = ["FCOS"]


def _flatten_levels(per_level: List[torch.Tensor]) -> torch.Tensor:
    """Per-level (N, C, H, W) maps -> (N, sum_i H_i W_i, C), levels concatenated row-major."""
    return cat([x.flatten(2).permute(0, 2, 1) for x in per_level], dim=1)


@PROPOSAL_GENERATOR_REGISTRY.register()
class FCOS(nn.Module):
    """Anchor-free one-stage detector head on FPN levels ``MODEL.FCOS.IN_FEATURES``."""

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        strides: List[int],
        fcos_head: FCOSHead,
        target_assigner: FCOSTargetAssigner,
        losses: FCOSLosses,
        postprocess_train: FCOSPostprocessor,
        postprocess_test: FCOSPostprocessor,
        yield_proposal: bool = False,
        yield_box_features: bool = False,
    ):
        """
        Args:
            in_features: names of the FPN levels used, fine to coarse; strides: theirs.
            postprocess_train: used in training when ``yield_proposal``; postprocess_test: at
                inference.
            yield_proposal: in training, also return the detached detections as proposals.
            yield_box_features: in training, also return the box-tower features.
        """
        super().__init__()
        self.in_features = list(in_features)
        self.strides = list(strides)
        self.fcos_head = fcos_head
        self.target_assigner = target_assigner
        self.losses = losses
        self.postprocess_train = postprocess_train
        self.postprocess_test = postprocess_test
        self.yield_proposal = yield_proposal
        self.yield_box_features = yield_box_features

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        fcfg = cfg.MODEL.FCOS
        in_features = list(fcfg.IN_FEATURES)
        strides = [input_shape[f].stride for f in in_features]
        if list(fcfg.FPN_STRIDES[: len(strides)]) != strides:
            raise ValueError(
                f"MODEL.FCOS.FPN_STRIDES {list(fcfg.FPN_STRIDES)} disagree with the backbone's "
                f"strides {strides} of {in_features}"
            )

        def postprocessor(threshold, pre_nms_topk, post_nms_topk):
            return FCOSPostprocessor(
                strides=strides,
                score_threshold=threshold,
                pre_nms_topk=pre_nms_topk,
                nms_threshold=fcfg.NMS_TH,
                post_nms_topk=post_nms_topk,
                thresh_with_ctr=fcfg.THRESH_WITH_CTR,
                norm_reg_targets=fcfg.NORM_REG_TARGETS,
                clip_before_nms=fcfg.CLIP_BEFORE_NMS,
                keep_ties=fcfg.POST_NMS_KEEP_TIES,
            )

        return {
            "in_features": in_features,
            "strides": strides,
            "fcos_head": FCOSHead(cfg, [input_shape[f] for f in in_features]),
            "target_assigner": FCOSTargetAssigner(
                num_classes=fcfg.NUM_CLASSES,
                strides=strides,
                sizes_of_interest=fcfg.SIZES_OF_INTEREST,
                center_sample=fcfg.CENTER_SAMPLE,
                pos_radius=fcfg.POS_RADIUS,
                norm_reg_targets=fcfg.NORM_REG_TARGETS,
            ),
            "losses": FCOSLosses(
                num_classes=fcfg.NUM_CLASSES,
                focal_alpha=fcfg.LOSS_ALPHA,
                focal_gamma=fcfg.LOSS_GAMMA,
                loc_loss_type=fcfg.LOC_LOSS_TYPE,
                iou_smoothing=fcfg.IOU_SMOOTHING,
            ),
            "postprocess_train": postprocessor(
                fcfg.INFERENCE_TH_TRAIN, fcfg.PRE_NMS_TOPK_TRAIN, fcfg.POST_NMS_TOPK_TRAIN
            ),
            "postprocess_test": postprocessor(
                fcfg.INFERENCE_TH_TEST, fcfg.PRE_NMS_TOPK_TEST, fcfg.POST_NMS_TOPK_TEST
            ),
            "yield_proposal": fcfg.YIELD_PROPOSAL,
            "yield_box_features": fcfg.YIELD_BOX_FEATURES,
        }

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
        top_module: Optional[nn.Module] = None,
    ):
        """
        Args:
            images: the padded batch (``image_sizes`` are the unpadded sizes).
            features: backbone outputs by name.
            gt_instances: per image ``gt_boxes``/``gt_classes`` (training only).
            top_module: optional size-keeping conv on the box tower (BlendMask's attentions):
                run on every location in training (``top_feats``), only at the detections kept
                at inference (``top_feat``).

        Returns:
            (results, losses).

            Training: ``losses`` = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"};
            ``results`` is a dict with, depending on the options:
              "proposals" (``yield_proposal``): per image ``Instances`` as at inference (with the
                  ``*_TRAIN`` thresholds, detached) plus ``proposal_boxes`` (= ``pred_boxes``);
              "positives" (``top_module`` given): one ``Instances`` over all positive locations
                  of the batch (image_size = padded batch size) with ``im_inds`` (image index),
                  ``gt_inds`` (index into the concatenation of all images' gt boxes),
                  ``labels``, ``fpn_levels``, ``locations`` (x, y), ``reg_targets``,
                  ``ctrness_targets`` and ``top_feats`` (the ``top_module`` output at that
                  location, with gradient);
              "box_features" (``yield_box_features``): {level name: box-tower output}.

            Inference: ``results`` = per image ``Instances`` (``pred_boxes``, ``scores``,
            ``pred_classes``, ``locations``, ``fpn_levels``, ``location_inds``, and ``top_feat``
            with a ``top_module``) in the network input resolution; ``losses`` = {}.
        """
        features = [features[f] for f in self.in_features]
        locations = [
            compute_locations(x.shape[-2], x.shape[-1], stride, x.device)
            for x, stride in zip(features, self.strides)
        ]
        if not self.training:
            return self._inference(features, locations, images.image_sizes, top_module), {}
        logits, bbox_reg, ctrness, top_feats, bbox_towers = self.fcos_head(features, top_module)

        targets = self.target_assigner(locations, gt_instances)
        losses = self.losses(
            _flatten_levels(logits).flatten(0, 1),
            _flatten_levels(bbox_reg).flatten(0, 1),
            _flatten_levels(ctrness).flatten(),
            targets["labels"].flatten(),
            targets["reg_targets"].flatten(0, 1),
            targets["ctrness_targets"].flatten(),
        )
        results = {}
        if self.yield_proposal:
            results["proposals"] = self._proposals(logits, bbox_reg, ctrness, locations, images)
        if top_module is not None:
            results["positives"] = self._positives(targets, locations, top_feats, images)
        if self.yield_box_features:
            results["box_features"] = dict(zip(self.in_features, bbox_towers))
        return results, losses

    def _inference(self, features, locations, image_sizes, top_module) -> List[Instances]:
        """Detections; ``top_module`` (a size-keeping conv) runs only at the locations of the
        detections kept, on their box-tower patches (``conv2d_at_locations``: the dense layer's
        values to float rounding, at a fraction of its cost)."""
        if top_module is not None:
            check_size_keeping(top_module, "FCOS's top_module")
        logits, bbox_reg, ctrness, _, bbox_towers = self.fcos_head(features)
        detections = self.postprocess_test(logits, bbox_reg, ctrness, locations, image_sizes)
        if top_module is not None:
            for i, instances in enumerate(detections):
                # per level, then back into the detections' order (no assignment into a
                # preallocated tensor: a traced ONNX graph keeps the example's value shapes)
                at_levels = [nonzero_tuple(instances.fpn_levels == level)[0]
                             for level in range(len(bbox_towers))]
                top_feat = cat([conv2d_at_locations(top_module, tower[i],
                                                    instances.location_inds[at_level])
                                for tower, at_level in zip(bbox_towers, at_levels)])
                instances.top_feat = top_feat[torch.argsort(cat(at_levels))]
        return detections

    @torch.no_grad()
    def _proposals(self, logits, bbox_reg, ctrness, locations, images):
        proposals = self.postprocess_train(logits, bbox_reg, ctrness, locations, images.image_sizes)
        for instances in proposals:
            instances.proposal_boxes = instances.pred_boxes.clone()
        return proposals

    @staticmethod
    def _positives(targets, locations, top_feats, images) -> Instances:
        im_inds, location_inds = torch.nonzero(targets["gt_inds"] >= 0, as_tuple=True)
        return Instances(
            tuple(images.tensor.shape[-2:]),
            im_inds=im_inds,
            gt_inds=targets["gt_inds"][im_inds, location_inds],
            labels=targets["labels"][im_inds, location_inds],
            fpn_levels=targets["fpn_levels"][location_inds],
            locations=cat(locations)[location_inds],
            reg_targets=targets["reg_targets"][im_inds, location_inds],
            ctrness_targets=targets["ctrness_targets"][im_inds, location_inds],
            top_feats=_flatten_levels(top_feats)[im_inds, location_inds],
        )
