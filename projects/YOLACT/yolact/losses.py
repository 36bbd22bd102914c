"""YOLACT's training losses (Sec. 3, 4.1; YOLACT++ Sec. 5.2), with the reference's settings
(dbolya/yolact, ``layers/modules/multibox_loss.py`` under ``yolact_base_config`` /
``yolact_plus_base_config``), value for value:

* Classification: softmax cross-entropy summed over the positives and the OHEM negatives, the
  3 negatives per positive of each image with the highest ``logsumexp(logits) - logits[bg]``.
* Boxes: smooth-L1 (beta 1) summed over the positives' Box2BoxTransform (10, 10, 5, 5) deltas.
* Masks: M = sigmoid(P C^T) of each positive (at most 100 per image, a random subset scaled
  up when more), cropped to its ground-truth box (padded by one prototype pixel), binary
  cross-entropy against the ground-truth mask bilinearly downsampled to the prototypes and
  thresholded at 0.5; per instance summed, divided by the box's area in prototype pixels and
  multiplied by Hp * Wp (the reference's ``mask_proto_normalize_emulate_roi_pooling``).
* Semantic segmentation: sigmoid cross-entropy of the P3 class logits against each class's
  union of downsampled masks, summed, divided by H3 * W3.
* Mask IoU (YOLACT++): smooth-L1 between the mask-IoU head's prediction for the ground-truth
  class, on the cropped mask probabilities, and the IoU of the thresholded mask with the ground
  truth, for the positives whose downsampled ground-truth mask covers over 25 pixels.

Box, classification, mask and mask-IoU losses are divided by the batch's number of positives
(shared by the data-parallel workers), the semantic loss by the number of images.
"""
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.structures import BitMasks, Instances, PolygonMasks
from rtinst.modeling.layers import assemble_masks, crop_to_boxes
from rtinst.utils.comm import mean_over_workers

from .matching import NEGATIVE, POSITIVE, match_anchors
from .outputs import YOLACTOutputs

__all__ = [
    "DEFAULT_WEIGHTS",
    "ohem_scores",
    "ohem_negatives",
    "classification_loss",
    "box_loss",
    "downsample_masks",
    "sample_masks",
    "lincomb_mask_loss",
    "semantic_targets",
    "semantic_segmentation_loss",
    "mask_iou_targets",
    "mask_iou_loss",
    "YOLACTLoss",
]

DEFAULT_WEIGHTS = {"conf": 1.0, "box": 1.5, "mask": 6.125, "semantic": 1.0, "mask_iou": 25.0}
CROP_PADDING = 1.0  # the reference's crop(padding=1), in prototype pixels


# ---------------------------------------------------------------------------------- boxes, classes
def ohem_scores(class_logits: torch.Tensor) -> torch.Tensor:
    """(..., C + 1) logits -> (...) hard-negative score ``logsumexp(logits) - logits[bg]``, the
    background's cross-entropy (the reference's ``log_sum_exp(x) - x[:, 0]``)."""
    return torch.logsumexp(class_logits, dim=-1) - class_logits[..., 0]


def ohem_negatives(scores: torch.Tensor, state: torch.Tensor,
                   negatives_per_positive: int = 3) -> torch.Tensor:
    """(N, A) bool: in each image, the ``min(ratio * positives, A - 1)`` negatives (state 0)
    of highest score (SSD's hard negative mining, the reference's ``ohem_conf_loss``). Fewer
    when the image has fewer negatives: positives and neutrals are never chosen; an image
    without positives gets none."""
    negative = state == NEGATIVE
    num_positives = (state == POSITIVE).sum(dim=1, keepdim=True)
    num_negatives = (negatives_per_positive * num_positives).clamp(max=state.shape[1] - 1)
    scores = scores.detach().masked_fill(~negative, float("-inf"))
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    return negative & (rank < num_negatives)


def classification_loss(class_logits: torch.Tensor, target_classes: torch.Tensor,
                        selected: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy summed over the ``selected`` anchors; ``target_classes`` 0 is the
    background, c + 1 the 0-based class c."""
    return F.cross_entropy(class_logits[selected], target_classes[selected],
                           reduction="none").sum()


def box_loss(box_deltas: torch.Tensor, target_deltas: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 1) summed over the (P, 4) deltas of the positive anchors."""
    return F.smooth_l1_loss(box_deltas, target_deltas, reduction="sum", beta=1.0)


# ------------------------------------------------------------------------------------------ masks
def downsample_masks(masks: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(G, H, W) masks bilinearly resized (align_corners False) to ``size`` and thresholded at
    0.5, as float (the reference's ``mask_proto_binarize_downsampled_gt``)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    resized = F.interpolate(masks[None].float(), size, mode="bilinear", align_corners=False)[0]
    return (resized > 0.5).float()


def sample_masks(num_masks: int, limit: int, device=None) -> Optional[torch.Tensor]:
    """Indices of a random subset of ``limit`` masks (``torch.randperm`` on the CPU generator,
    as the reference) when there are more than ``limit``; None otherwise."""
    if num_masks <= limit:
        return None
    return torch.randperm(num_masks)[:limit].to(device)


def lincomb_mask_loss(coefficients: torch.Tensor, prototypes: torch.Tensor,
                      gt_masks: torch.Tensor, boxes: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-instance mask losses (P,) and cropped mask probabilities (P, Hp, Wp).

    ``coefficients`` (P, K), ``prototypes`` (K, Hp, Wp), ``gt_masks`` (P, Hp, Wp) binary,
    ``boxes`` (P, 4) the ground-truth boxes in prototype pixels. The masks sigmoid(P C^T) are
    cropped to the padded boxes, the binary cross-entropy is summed per instance, divided by
    the box's width and height and multiplied by Hp * Wp (emulating RoI pooling).
    """
    height, width = prototypes.shape[-2:]
    probabilities = crop_to_boxes(torch.sigmoid(assemble_masks(coefficients, prototypes)), boxes,
                                  padding=CROP_PADDING)
    bce = F.binary_cross_entropy(probabilities.clamp(0, 1), gt_masks, reduction="none")
    box_width, box_height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return bce.sum(dim=(1, 2)) / box_width / box_height * (height * width), probabilities


def semantic_targets(masks: torch.Tensor, classes: torch.Tensor, num_classes: int,
                     size: Tuple[int, int]) -> torch.Tensor:
    """(C, h, w) targets: for each class the union (max) of its instances' masks, each
    downsampled to ``size`` and thresholded at 0.5."""
    target = masks.new_zeros((num_classes, *size), dtype=torch.float32)
    downsampled = downsample_masks(masks, size)
    for mask, cls in zip(downsampled, classes.tolist()):
        target[cls] = torch.maximum(target[cls], mask)
    return target


def semantic_segmentation_loss(semantic_logits: torch.Tensor, masks: List[torch.Tensor],
                               classes: List[torch.Tensor]) -> torch.Tensor:
    """Sigmoid cross-entropy of the (N, C, h, w) logits, summed over the batch, divided by
    h * w (not by N). ``masks``/``classes``: per image the (G, H, W) masks, (G,) classes."""
    num_classes, height, width = semantic_logits.shape[1:]
    total = semantic_logits.new_zeros(())
    for logits, image_masks, image_classes in zip(semantic_logits, masks, classes):
        target = semantic_targets(image_masks, image_classes, num_classes, (height, width))
        total = total + F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    return total / height / width


def mask_iou_targets(probabilities: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """(P,) IoU of each (P, Hp, Wp) mask thresholded at 0.5 with its binary ground truth."""
    predicted = (probabilities > 0.5).float()
    intersection = (predicted * gt_masks).sum(dim=(1, 2))
    union = predicted.sum(dim=(1, 2)) + gt_masks.sum(dim=(1, 2)) - intersection
    return intersection / union


def mask_iou_loss(predicted_ious: torch.Tensor, classes: torch.Tensor,
                  target_ious: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 (beta 1) summed between the (P, C) predicted IoUs taken at the (P,) 0-based
    ground-truth classes and the (P,) targets."""
    predicted = predicted_ious.gather(1, classes[:, None]).view(-1)
    return F.smooth_l1_loss(predicted, target_ious, reduction="sum", beta=1.0)


# ---------------------------------------------------------------------------------------- targets
class _ImageTargets(NamedTuple):
    boxes: torch.Tensor  # (G, 4) XYXY input pixels, crowds removed
    classes: torch.Tensor  # (G,) 0-based
    masks: torch.Tensor  # (G, H, W) bool
    crowd_boxes: torch.Tensor  # (Gc, 4)


def _mask_tensor(masks, height: int, width: int) -> torch.Tensor:
    if isinstance(masks, PolygonMasks):
        masks = BitMasks.from_polygon_masks(masks, height, width)
    return masks.tensor if isinstance(masks, BitMasks) else masks


def _split_crowds(instances: Instances, device) -> _ImageTargets:
    """The image's objects with crowds (``gt_is_crowd``) separated: crowds keep only boxes."""
    height, width = instances.image_size
    boxes = instances.gt_boxes.tensor.to(device=device, dtype=torch.float32)
    classes = instances.gt_classes.to(device)
    masks = _mask_tensor(instances.gt_masks, height, width).to(device)
    if instances.has("gt_is_crowd"):
        crowd = instances.gt_is_crowd.to(device=device, dtype=torch.bool)
    else:
        crowd = torch.zeros(len(instances), dtype=torch.bool, device=device)
    return _ImageTargets(boxes[~crowd], classes[~crowd], masks[~crowd], boxes[crowd])


# ------------------------------------------------------------------------------------------- loss
class YOLACTLoss:
    """YOLACT's (and YOLACT++'s) training losses for one batch; see the module docstring."""

    def __init__(self, *, num_classes: int, box2box_transform, positive_iou: float = 0.5,
                 negative_iou: float = 0.4, crowd_iou: float = 0.7,
                 negatives_per_positive: int = 3, masks_per_image: int = 100,
                 mask_iou_min_area: float = 25.0, weights: Optional[Dict[str, float]] = None):
        self.num_classes = num_classes
        self.box2box_transform = box2box_transform
        self.positive_iou = positive_iou
        self.negative_iou = negative_iou
        self.crowd_iou = crowd_iou
        self.negatives_per_positive = negatives_per_positive
        self.masks_per_image = masks_per_image
        self.mask_iou_min_area = mask_iou_min_area
        unknown = set(weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f"Unknown YOLACT loss weights {sorted(unknown)}; "
                             f"expected some of {sorted(DEFAULT_WEIGHTS)}")
        self.weights = {**DEFAULT_WEIGHTS, **(weights or {})}

    def __call__(self, outputs: YOLACTOutputs, anchors: torch.Tensor,
                 targets: List[Instances], mask_iou_head: Optional[nn.Module] = None
                 ) -> Dict[str, torch.Tensor]:
        device = outputs.class_logits.device
        # float32 throughout: binary_cross_entropy is refused under autocast
        with torch.autocast(device_type=device.type, enabled=False):
            outputs = YOLACTOutputs(*(None if t is None else t.float() for t in outputs))
            return self._losses(outputs, anchors.float(), targets, mask_iou_head)

    # ---------------------------------------------------------------------------- steps
    def _match(self, anchors: torch.Tensor, image: _ImageTargets):
        """(matched index, state, target classes) of one image's anchors."""
        matched, state = match_anchors(anchors, image.boxes, image.crowd_boxes,
                                       self.positive_iou, self.negative_iou, self.crowd_iou)
        if len(image.classes):
            target_classes = torch.where(state == POSITIVE, image.classes[matched] + 1, 0)
        else:
            target_classes = torch.zeros_like(state)
        return matched, state, target_classes

    def _losses(self, outputs: YOLACTOutputs, anchors: torch.Tensor, targets: List[Instances],
                mask_iou_head: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
        device = outputs.class_logits.device
        images = [_split_crowds(t, device) for t in targets]
        matches = [self._match(anchors, image) for image in images]
        matched = torch.stack([m[0] for m in matches])
        state = torch.stack([m[1] for m in matches])
        target_classes = torch.stack([m[2] for m in matches])
        positive = state == POSITIVE
        normaliser = mean_over_workers(positive.sum().float()).clamp(min=1)

        negative = ohem_negatives(ohem_scores(outputs.class_logits), state,
                                  self.negatives_per_positive)
        loss_conf = classification_loss(outputs.class_logits, target_classes, positive | negative)
        loss_box = box_loss(outputs.box_deltas[positive],
                            self._target_deltas(anchors, images, matched, positive))
        loss_mask, mask_iou_inputs = self._mask_losses(outputs, images, targets, matched, positive)

        losses = {
            "loss_conf": loss_conf * self.weights["conf"] / normaliser,
            "loss_box": loss_box * self.weights["box"] / normaliser,
            "loss_mask": loss_mask / normaliser,
        }
        if outputs.semantic_logits is not None:
            loss_semantic = semantic_segmentation_loss(
                outputs.semantic_logits, [i.masks for i in images], [i.classes for i in images])
            losses["loss_semantic"] = loss_semantic * self.weights["semantic"] / len(targets)
        if mask_iou_head is not None:
            losses["loss_mask_iou"] = (self._mask_iou_loss(mask_iou_head, *mask_iou_inputs, device)
                                       * self.weights["mask_iou"] / normaliser)
        return losses

    def _target_deltas(self, anchors, images, matched, positive) -> torch.Tensor:
        """(P, 4) deltas from the positive anchors to their ground truths, batch order."""
        deltas = []
        for image, image_matched, image_positive in zip(images, matched, positive):
            gt_boxes = image.boxes[image_matched[image_positive]]
            deltas.append(self.box2box_transform.get_deltas(anchors[image_positive], gt_boxes))
        return torch.cat(deltas)

    def _mask_losses(self, outputs, images, targets, matched, positive):
        """(mask loss (weighted, / Hp / Wp, not yet / positives), mask-IoU head inputs)."""
        height, width = outputs.prototypes.shape[-2:]
        total = (outputs.coefficients.sum() + outputs.prototypes.sum()) * 0.0
        iou_inputs, iou_targets, iou_classes = [], [], []
        for n, image in enumerate(images):
            gt_index = matched[n, positive[n]]
            if len(gt_index) == 0:
                continue
            coefficients = outputs.coefficients[n, positive[n]]
            select = sample_masks(len(gt_index), self.masks_per_image, gt_index.device)
            scale = 1.0
            if select is not None:
                scale = len(gt_index) / len(select)
                coefficients, gt_index = coefficients[select], gt_index[select]
            gt_masks = downsample_masks(image.masks, (height, width))[gt_index]
            boxes = self._prototype_boxes(image.boxes[gt_index], targets[n].image_size,
                                          (height, width))
            per_instance, probabilities = lincomb_mask_loss(
                coefficients, outputs.prototypes[n], gt_masks, boxes)
            if scale != 1.0:
                per_instance = per_instance * scale
            total = total + per_instance.sum()

            large = gt_masks.sum(dim=(1, 2)) > self.mask_iou_min_area
            iou_inputs.append(probabilities[large, None])
            iou_targets.append(mask_iou_targets(probabilities[large], gt_masks[large]))
            iou_classes.append(image.classes[gt_index[large]])
        loss = total * self.weights["mask"] / height / width
        return loss, (iou_inputs, iou_targets, iou_classes)

    @staticmethod
    def _prototype_boxes(boxes: torch.Tensor, image_size, proto_size) -> torch.Tensor:
        """XYXY input-pixel boxes -> prototype pixels, through relative coordinates as the
        reference (x / W * Wp)."""
        (height, width), (proto_h, proto_w) = image_size, proto_size
        image_scale = boxes.new_tensor([width, height, width, height])
        proto_scale = boxes.new_tensor([proto_w, proto_h, proto_w, proto_h])
        return boxes / image_scale * proto_scale

    @staticmethod
    def _mask_iou_loss(head: nn.Module, inputs, targets, classes, device) -> torch.Tensor:
        """Summed smooth-L1 of the mask-IoU head on all the batch's large positives at once;
        a zero tied to the head's parameters when there are none."""
        if sum(len(x) for x in inputs) == 0:
            zero = torch.zeros((), device=device)
            return sum((p.sum() * 0.0 for p in head.parameters()), zero)
        inputs = torch.cat(inputs)
        return mask_iou_loss(head(inputs), torch.cat(classes), torch.cat(targets))
