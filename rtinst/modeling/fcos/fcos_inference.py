"""FCOS inference (Sec. 3.3): score = sqrt(classification x center-ness), boxes decoded from each
location's (l, t, r, b), per-level pre-NMS top-k, then class-aware NMS per image.

By default this is AdelaiDet's and centermask2's post-processing exactly: the threshold applies to
the class probability, or to cls x ctr with ``thresh_with_ctr`` (the reported score is always its
square root); boxes leave unclipped (Detectron2's ``detector_postprocess`` clips them and drops
the empty ones after the top-k, so the masks are pooled from the unclipped boxes); the post-NMS
top-k keeps every detection tied with the k-th score. ``clip_before_nms`` clips before the NMS
and drops boxes clipped to nothing before the top-k (masks then pooled from the clipped box).
"""
import math
from typing import List, Sequence, Tuple

import torch

from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

__all__ = ["FCOSPostprocessor"]


def _at_most(k: int, size):
    """min(k, size); inside a traced ONNX graph whose input size varies, a tensor that
    follows ``size`` (a Python ``min`` would freeze the tracing example's)."""
    if torch.jit.is_tracing():
        return torch.clamp(torch.as_tensor(size), max=k)
    return min(k, size)


class FCOSPostprocessor:
    """Turns the head's per-level outputs into detections, one ``Instances`` per image."""

    def __init__(
        self,
        strides: Sequence[int],
        score_threshold: float,
        pre_nms_topk: int,
        nms_threshold: float,
        post_nms_topk: int,
        thresh_with_ctr: bool,
        norm_reg_targets: bool,
        clip_before_nms: bool = False,
        keep_ties: bool = True,
    ):
        """
        Args:
            strides: stride of each level.
            score_threshold: candidates need a classification probability above it
                (cls x ctr when ``thresh_with_ctr``).
            pre_nms_topk: candidates kept per image and level, by final score.
            nms_threshold: IoU threshold of the class-aware NMS.
            post_nms_topk: detections kept per image (<= 0: all).
            norm_reg_targets: the distances are in units of the level's stride.
            clip_before_nms: clip the boxes to the image before the NMS and drop those clipped
                to nothing (else they are left to ``detector_postprocess``, as the references do).
            keep_ties: the post-NMS top-k also keeps the detections tied with the k-th score.
        """
        self.strides = list(strides)
        self.score_threshold = score_threshold
        self.pre_nms_topk = pre_nms_topk
        self.nms_threshold = nms_threshold
        self.post_nms_topk = post_nms_topk
        self.thresh_with_ctr = thresh_with_ctr
        self.norm_reg_targets = norm_reg_targets
        self.clip_before_nms = clip_before_nms
        self.keep_ties = keep_ties

    def __call__(
        self,
        logits: List[torch.Tensor],
        bbox_reg: List[torch.Tensor],
        ctrness: List[torch.Tensor],
        locations: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """
        Args:
            logits (N, K, H, W), bbox_reg (N, 4, H, W), ctrness (N, 1, H, W): per level, the head's
                outputs; locations: per level, (H * W, 2) image points.
            image_sizes: (height, width) of each image before padding (with ``clip_before_nms``,
                boxes are clipped to it and those clipped to nothing dropped).

        Returns:
            per image, ``Instances`` with ``pred_boxes``, ``scores``, ``pred_classes``,
            ``locations``, ``fpn_levels`` and ``location_inds`` (the location's row-major index
            in its level's H x W map).
        """
        per_level = [
            self._candidates_of_level(
                level, logits[level], bbox_reg[level], ctrness[level], locations[level],
                image_sizes,
            )
            for level in range(len(logits))
        ]
        return [
            self._nms(Instances.cat([level_results[i] for level_results in per_level]))
            for i in range(len(image_sizes))
        ]

    def _candidates_of_level(self, level, logits, bbox_reg, ctrness, locations, image_sizes):
        num_images, num_classes = logits.shape[:2]
        cls_prob = logits.sigmoid().reshape(num_images, num_classes, -1).permute(0, 2, 1)
        ctr_prob = ctrness.sigmoid().reshape(num_images, -1, 1)
        combined = cls_prob * ctr_prob
        distances = bbox_reg.reshape(num_images, 4, -1).permute(0, 2, 1)
        if self.norm_reg_targets:
            distances = distances * self.strides[level]
        above = (combined if self.thresh_with_ctr else cls_prob) > self.score_threshold

        results = []
        for i, image_size in enumerate(image_sizes):
            # the top pre_nms_topk of the candidates above the threshold: a top-k of fixed size
            # over the whole map, then the threshold (the same candidates as thresholding first;
            # tensor shapes that do not depend on the values, so this runs inside an ONNX graph)
            flat = torch.where(above[i], combined[i], -1.0).flatten()
            candidate_scores, index = flat.topk(_at_most(self.pre_nms_topk, flat.shape[0]))
            index = index[above[i].flatten()[index]]
            candidate_scores = combined[i].flatten()[index]
            location_inds, classes = index // num_classes, index % num_classes
            points = locations[location_inds]
            ltrb = distances[i, location_inds]
            boxes = Boxes(torch.cat((points - ltrb[:, :2], points + ltrb[:, 2:]), dim=1))
            instances = Instances(
                image_size,
                pred_boxes=boxes,
                scores=candidate_scores.sqrt(),
                pred_classes=classes,
                locations=points,
                fpn_levels=torch.full_like(classes, level),
                location_inds=location_inds,
            )
            if self.clip_before_nms:
                # a box of a location in the padding can be clipped to nothing: dropped here,
                # before the top-k, rather than by detector_postprocess after it
                boxes.clip(image_size)
                instances = instances[boxes.nonempty()]
            results.append(instances)
        return results

    def _nms(self, instances: Instances) -> Instances:
        keep = batched_nms(
            instances.pred_boxes.tensor, instances.scores, instances.pred_classes,
            self.nms_threshold,
        )  # in decreasing score order
        if self.post_nms_topk <= 0:  # no limit
            return instances[keep]
        scores = instances.scores[keep]
        kept = torch.arange(scores.shape[0], device=scores.device) < self.post_nms_topk
        if self.keep_ties:  # and those tied with the k-th score (-inf: fewer than k)
            kth = torch.cat([scores, scores.new_full((self.post_nms_topk,), -math.inf)])
            kept = kept | (scores >= kth[self.post_nms_topk - 1])
        return instances[keep[kept]]
