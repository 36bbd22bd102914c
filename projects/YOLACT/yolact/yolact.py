"""YOLACT (Bolya et al., ICCV 2019) and YOLACT++ (TPAMI 2020) as a Detectron2 meta-architecture
(Fig. 2):

    image resized to 550 x 550 -> backbone + FPN (P3-P7)
        -> ProtoNet on P3: k prototypes at 1/4 of the input (138 x 138)     (Sec. 3.1)
        -> shared head on every level: box deltas, C + 1 confidences and k
           tanh coefficients for each anchor                               (Sec. 3.2)
        -> (training) matching, OHEM, box / mask / semantic losses        (Sec. 3.2, 6)
        -> (inference) Fast NMS, masks = sigma(P C^T) cropped to the box   (Sec. 3.3, 3.4)
        -> (YOLACT++) mask re-scoring                                      (TPAMI Sec. 3.1)

The image is resized inside the model (``MODEL.YOLACT.INPUT_SIZE``; bilinear, as the reference's
``FastBaseTransform``), so the predictor and the evaluator feed it the original image
(``INPUT.MIN_SIZE_TEST`` 0) and get boxes and masks at that image's size; in training the
``YOLACTDatasetMapper`` has already resized it (with its annotations).
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import BitMasks, Boxes, ImageList, Instances, PolygonMasks

from rtinst.modeling.layers import ProtoNet

from .anchors import YOLACTAnchors
from .checkpoint_conversion import convert_reference_state_dict, is_reference_state_dict
from .dataset_mapper import input_size_for
from .head import YOLACTHead
from .inference import YOLACTInference
from .losses import YOLACTLoss
from .mask_rescoring import MaskIoUHead
from .outputs import YOLACTOutputs

__all__ = ["YOLACT", "convert_checkpoint"]

logger = logging.getLogger(__name__)

BOX_CODING_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # SSD's variances 0.1 (centre) and 0.2 (size)


def convert_checkpoint(state_dict: Dict) -> Dict:
    """The reference implementation's state dict converted (the package registers this as the
    ``YOLACT`` checkpoint converter: ``SafeCheckpointer`` calls it on every checkpoint it loads
    into one); any other one as it is."""
    if not is_reference_state_dict(state_dict):
        return state_dict
    converted, report = convert_reference_state_dict(state_dict)
    logger.info("Converted a dbolya/yolact checkpoint: %s", report.summary())
    return converted


@META_ARCH_REGISTRY.register()
class YOLACT(nn.Module):
    """Outputs per image ``{"instances": Instances}`` with ``pred_boxes``, ``scores``,
    ``pred_classes``, ``pred_masks`` (and, with mask re-scoring, ``class_scores``: the class
    confidences the re-scored ``scores`` were made from)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, protonet: ProtoNet, head: YOLACTHead,
                 anchors: YOLACTAnchors, semantic_pred: Optional[nn.Module],
                 mask_iou_head: Optional[MaskIoUHead], loss: YOLACTLoss,
                 inference: YOLACTInference, input_size: int, preserve_aspect_ratio: bool,
                 pixel_mean: Tuple[float, ...], pixel_std: Tuple[float, ...]):
        super().__init__()
        self.backbone = backbone
        self.protonet = protonet
        self.head = head
        self.anchors = anchors
        self.semantic_pred = semantic_pred
        self.mask_iou_head = mask_iou_head
        self.loss = loss
        self.inference = inference
        self.input_size = input_size
        self.preserve_aspect_ratio = preserve_aspect_ratio
        self.in_features = list(backbone.output_shape())
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        ycfg = cfg.MODEL.YOLACT
        backbone = build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        shapes = backbone.output_shape()
        channels = shapes["p3"].channels
        anchors = YOLACTAnchors(ycfg.ANCHOR_SCALES, ycfg.ANCHOR_ASPECT_RATIOS, ycfg.INPUT_SIZE,
                                ycfg.SQUARE_ANCHORS)
        if anchors.num_levels != len(shapes):
            raise ValueError(f"MODEL.YOLACT.ANCHOR_SCALES has {anchors.num_levels} levels, the "
                             f"backbone {len(shapes)} ({sorted(shapes)})")
        per_location = set(anchors.num_anchors_per_location())
        if len(per_location) != 1:
            raise ValueError("the shared head needs as many anchors on every level; "
                             f"MODEL.YOLACT.ANCHOR_SCALES / ANCHOR_ASPECT_RATIOS give "
                             f"{anchors.num_anchors_per_location()}")
        box2box = Box2BoxTransform(weights=BOX_CODING_WEIGHTS)
        num_classes = ycfg.NUM_CLASSES
        return {
            "backbone": backbone,
            "protonet": ProtoNet([channels], ycfg.PROTONET_CONV_DIM, ycfg.PROTONET_NUM_CONVS - 1,
                                 ycfg.NUM_PROTOTYPES),
            "head": YOLACTHead(channels, ycfg.HEAD_CONV_DIM, per_location.pop(), num_classes,
                               ycfg.NUM_PROTOTYPES),
            "anchors": anchors,
            "semantic_pred": nn.Conv2d(channels, num_classes, 1) if ycfg.SEMANTIC_LOSS else None,
            "mask_iou_head": (MaskIoUHead(num_classes, ycfg.MASK_IOU_CONV_DIMS)
                              if ycfg.MASK_RESCORING else None),
            "loss": YOLACTLoss(
                num_classes=num_classes, box2box_transform=box2box,
                positive_iou=ycfg.POSITIVE_IOU, negative_iou=ycfg.NEGATIVE_IOU,
                crowd_iou=ycfg.CROWD_IOU, negatives_per_positive=ycfg.NEGATIVES_PER_POSITIVE,
                masks_per_image=ycfg.MASKS_PER_IMAGE, mask_iou_min_area=ycfg.MASK_IOU_MIN_AREA,
                weights={"conf": ycfg.CONF_LOSS_WEIGHT, "box": ycfg.BOX_LOSS_WEIGHT,
                         "mask": ycfg.MASK_LOSS_WEIGHT, "semantic": ycfg.SEMANTIC_LOSS_WEIGHT,
                         "mask_iou": ycfg.MASK_IOU_LOSS_WEIGHT},
            ),
            "inference": YOLACTInference(
                box2box_transform=box2box, nms_type=ycfg.NMS_TYPE,
                nms_threshold=ycfg.NMS_THRESH, top_k=ycfg.NMS_TOP_K,
                score_threshold=ycfg.SCORE_THRESH, max_detections=ycfg.DETECTIONS_PER_IMAGE,
                mask_threshold=ycfg.MASK_THRESHOLD, crop_padding=ycfg.CROP_PADDING,
                clip_boxes=ycfg.CLIP_BOXES,
            ),
            "input_size": ycfg.INPUT_SIZE,
            "preserve_aspect_ratio": ycfg.PRESERVE_ASPECT_RATIO,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def resize_and_normalize(self, image: torch.Tensor) -> torch.Tensor:
        """A (3, H, W) image resized to the network input (bilinear on the float image) and
        normalised; unchanged in size when it already has that size."""
        x = image.to(self.device).float()
        size = input_size_for(*x.shape[-2:], self.input_size, self.preserve_aspect_ratio)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        return (x - self.pixel_mean) / self.pixel_std

    def predict(self, images: torch.Tensor) -> Tuple[YOLACTOutputs, torch.Tensor]:
        """The network on a normalised (N, 3, H, W) batch: its outputs and the (A, 4) anchors."""
        return self.predict_from_features(self.backbone(images), tuple(images.shape[-2:]))

    def predict_from_features(self, features: Dict[str, torch.Tensor], image_shape: Tuple[int, int]
                              ) -> Tuple[YOLACTOutputs, torch.Tensor]:
        """ProtoNet, head (and in training the semantic logits) on the pyramid ``features`` of an
        (H, W) = ``image_shape`` batch; the outputs and the anchors."""
        levels = [features[f] for f in self.in_features]
        prototypes = F.relu(self.protonet(levels[:1]))
        box_deltas, class_logits, coefficients = self.head(levels)
        semantic = None
        if self.training and self.semantic_pred is not None:
            semantic = self.semantic_pred(levels[0])
        anchors = self.anchors([tuple(x.shape[-2:]) for x in levels], image_shape,
                               levels[0].device)
        outputs = YOLACTOutputs(box_deltas, class_logits, coefficients, prototypes, semantic)
        return outputs, anchors

    def forward(self, batched_inputs: List[Dict]):
        """
        Returns:
            training: ``loss_conf``, ``loss_box``, ``loss_mask``, ``loss_semantic`` and, with
            mask re-scoring, ``loss_mask_iou``; inference: per image ``{"instances": ...}`` at
            its original "height" / "width" (the input's size when absent).
        """
        images = ImageList.from_tensors([self.resize_and_normalize(x["image"])
                                         for x in batched_inputs])
        outputs, anchors = self.predict(images.tensor)
        if self.training:
            return self.losses(outputs, anchors, batched_inputs, images)
        return [
            {"instances": self._instances(outputs, i, anchors, images, x)}
            for i, x in enumerate(batched_inputs)
        ]

    def losses(self, outputs: YOLACTOutputs, anchors: torch.Tensor, batched_inputs: List[Dict],
               images: ImageList) -> Dict[str, torch.Tensor]:
        """The losses of the network's ``outputs`` on ``images`` against the inputs' instances."""
        diverged = [name for name, x in outputs._asdict().items()
                    if x is not None and not torch.isfinite(x).all()]
        if diverged:  # (the mask loss's BCE would fail on them with an obscure message)
            raise FloatingPointError(
                f"YOLACT's {', '.join(diverged)} became infinite or NaN: training diverged "
                "(lower SOLVER.BASE_LR, or lengthen SOLVER.WARMUP_ITERS)")
        targets = [self._targets(x, size) for x, size in zip(batched_inputs, images.image_sizes)]
        return self.loss(outputs, anchors, targets, self.mask_iou_head)

    def _targets(self, inputs: Dict, image_size: Tuple[int, int]) -> Instances:
        """The image's "instances" with bit masks at the input size, plus its "crowd_boxes"
        (``YOLACTDatasetMapper``) as ``gt_is_crowd`` objects with empty masks."""
        if tuple(inputs["image"].shape[-2:]) != tuple(image_size):
            raise ValueError(
                f"YOLACT trains on images already resized to its input size {image_size}, got "
                f"{tuple(inputs['image'].shape[-2:])}: use INPUT.DATASET_MAPPER "
                "'YOLACTDatasetMapper'"
            )
        instances = inputs["instances"].to(self.device)
        height, width = image_size
        masks = instances.gt_masks if instances.has("gt_masks") else None
        if isinstance(masks, PolygonMasks):
            masks = BitMasks.from_polygon_masks(masks, height, width)
        targets = Instances(image_size)
        targets.gt_boxes = instances.gt_boxes
        targets.gt_classes = instances.gt_classes
        targets.gt_masks = BitMasks(masks.tensor.to(self.device) if masks is not None else
                                    torch.zeros(len(instances), height, width, dtype=torch.bool,
                                                device=self.device))
        targets.gt_is_crowd = torch.zeros(len(instances), dtype=torch.bool, device=self.device)
        crowd = inputs.get("crowd_boxes")
        if crowd is None or len(crowd) == 0:
            return targets
        crowds = Instances(image_size)
        crowds.gt_boxes = Boxes(torch.as_tensor(crowd, dtype=torch.float32, device=self.device))
        crowds.gt_classes = torch.zeros(len(crowd), dtype=torch.int64, device=self.device)
        crowds.gt_masks = BitMasks(torch.zeros(len(crowd), height, width, dtype=torch.bool,
                                               device=self.device))
        crowds.gt_is_crowd = torch.ones(len(crowd), dtype=torch.bool, device=self.device)
        return Instances.cat([targets, crowds])

    def _instances(self, outputs: YOLACTOutputs, i: int, anchors: torch.Tensor,
                   images: ImageList, inputs: Dict) -> Instances:
        image_size = images.image_sizes[i]
        output_size = (inputs.get("height", inputs["image"].shape[-2]),
                       inputs.get("width", inputs["image"].shape[-1]))
        boxes, scores, classes, masks, confidences = self.inference(
            outputs.box_deltas[i], outputs.class_logits[i], outputs.coefficients[i],
            outputs.prototypes[i], anchors, tuple(images.tensor.shape[-2:]), image_size,
            output_size, self.mask_iou_head,
        )
        result = Instances(output_size)
        result.pred_boxes = Boxes(boxes)
        result.scores = scores
        result.pred_classes = classes
        result.pred_masks = masks
        if self.mask_iou_head is not None:
            result.class_scores = confidences
        return result
