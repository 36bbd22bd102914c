"""YOLACT's inference for one image (Sec. 3.3-3.4): decode the boxes, keep the anchors whose best
class confidence passes the threshold, (Fast) NMS, assemble the kept detections' masks from the
prototypes (M = sigma(P C^T)), crop them to their boxes, optionally re-score them (YOLACT++),
and resize them to the output image and threshold them -- the reference's ``Detect`` and
``postprocess`` as tensor operations that trace into an ONNX graph."""
from typing import Optional, Tuple

import torch
from torch.nn import functional as F

from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes

from rtinst.modeling.layers import assemble_masks, crop_to_boxes

from .fast_nms import suppress
from .mask_rescoring import MaskIoUHead, rescore

__all__ = ["YOLACTInference", "resize_masks"]


def resize_masks(masks: torch.Tensor, region: Tuple[float, float], output_size: Tuple[int, int]
                 ) -> torch.Tensor:
    """(P, Hp, Wp) mask probabilities whose top-left ``region`` (h, w, in prototype pixels)
    shows the image, bilinearly resized so that this region becomes ``output_size``."""
    out_h, out_w = output_size
    hp, wp = masks.shape[-2:]
    full = (int(round(out_h * hp / region[0])), int(round(out_w * wp / region[1])))
    # (one empty mask more: interpolate refuses a tensor without channels)
    masks = torch.cat([masks, masks.new_zeros(1, hp, wp)])
    resized = F.interpolate(masks[None], size=full, mode="bilinear", align_corners=False)[0]
    return resized[:-1, :out_h, :out_w]


class YOLACTInference:
    """Detections of one image from its network outputs."""

    def __init__(self, *, box2box_transform: Box2BoxTransform, nms_type: str = "fast",
                 nms_threshold: float = 0.5, top_k: int = 200, score_threshold: float = 0.05,
                 max_detections: int = 100, mask_threshold: float = 0.5,
                 crop_padding: float = 1.0, clip_boxes: bool = True):
        self.box2box_transform = box2box_transform
        self.clip_boxes = clip_boxes
        self.nms_type = nms_type
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.mask_threshold = mask_threshold
        self.crop_padding = crop_padding

    def detect(self, box_deltas: torch.Tensor, class_logits: torch.Tensor,
               coefficients: torch.Tensor, prototypes: torch.Tensor, anchors: torch.Tensor,
               input_size: Tuple[int, int], mask_iou_head: Optional[MaskIoUHead] = None):
        """The detections of one image at the network's scale (the reference's ``Detect`` and
        the first half of its ``postprocess``).

        Args:
            box_deltas, class_logits, coefficients: (A, 4 / C + 1 / k) of one image.
            prototypes: (k, Hp, Wp) covering the whole (padded) input of ``input_size`` (h, w).

        Returns:
            boxes (P, 4) XYXY in input pixels, scores (P,), classes (P,) int64, masks (P, Hp, Wp)
            cropped mask probabilities, class confidences (P,) (the scores before mask
            re-scoring), best score first.
        """
        probabilities = class_logits.softmax(dim=-1)[:, 1:]
        candidates = torch.nonzero(probabilities.amax(dim=1) > self.score_threshold)[:, 0]
        boxes = self.box2box_transform.apply_deltas(box_deltas[candidates], anchors[candidates])
        kept, classes, scores = suppress(
            self.nms_type, boxes, probabilities[candidates].t(), self.nms_threshold, self.top_k,
            self.max_detections, self.score_threshold,
        )
        boxes = boxes[kept]
        hp, wp = prototypes.shape[-2:]
        to_prototype = boxes.new_tensor([wp / input_size[1], hp / input_size[0]]).repeat(2)
        masks = assemble_masks(coefficients[candidates[kept]], prototypes).sigmoid()
        masks = crop_to_boxes(masks, boxes * to_prototype, padding=self.crop_padding)
        confidences = scores
        if mask_iou_head is not None:
            scores = rescore(mask_iou_head, masks, classes, scores)
            scores, order = scores.sort(descending=True)
            boxes, classes, masks, confidences = (boxes[order], classes[order], masks[order],
                                                  confidences[order])
        return boxes, scores, classes, masks, confidences

    def __call__(self, box_deltas: torch.Tensor, class_logits: torch.Tensor,
                 coefficients: torch.Tensor, prototypes: torch.Tensor, anchors: torch.Tensor,
                 input_size: Tuple[int, int], image_size: Tuple[int, int],
                 output_size: Tuple[int, int], mask_iou_head: Optional[MaskIoUHead] = None):
        """``detect``, then boxes and masks mapped from the part of the input that holds the
        image (``image_size`` (h, w), top-left) to ``output_size``: boxes clipped to it (or,
        without ``clip_boxes``, as the reference's ``sanitize_coordinates``: x1, y1 >= 0 and
        x2 <= w, y2 <= h each on its own, so that a box wholly outside stays inverted), masks
        resized to it and thresholded (bool)."""
        boxes, scores, classes, masks, confidences = self.detect(
            box_deltas, class_logits, coefficients, prototypes, anchors, input_size,
            mask_iou_head)
        hp, wp = prototypes.shape[-2:]
        image_h, image_w = image_size
        region = (image_h * hp / input_size[0], image_w * wp / input_size[1])
        masks = resize_masks(masks, region, output_size) > self.mask_threshold
        scale = boxes.new_tensor([output_size[1] / image_w, output_size[0] / image_h]).repeat(2)
        boxes = boxes * scale
        if self.clip_boxes:
            boxes = Boxes(boxes)
            boxes.clip(output_size)
            boxes = boxes.tensor
        else:
            height, width = output_size
            boxes = torch.stack([boxes[:, 0].clamp(min=0), boxes[:, 1].clamp(min=0),
                                 boxes[:, 2].clamp(max=width), boxes[:, 3].clamp(max=height)], 1)
        return boxes, scores, classes, masks, confidences
