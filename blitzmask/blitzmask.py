"""BlitzMask (Sec. 2, Fig. 1) as a Detectron2 meta-architecture:

    backbone + separable FPN -> stride-4 feature -> lite head -> Y, D, Lambda, B
    training: targets.py -> losses.py (heatmap, size, masks from Eq. 1 at the true centres)
    inference: Y and B on the whole map; peaks.py (instances = heatmap peaks); D and Lambda at
    the peaks only; spanning_set.py (Eq. 1 on the stride-4 grid); one resize to the image and
    the threshold (``rtinst.modeling.layers.grid_masks_to_image``)

``inference_tensors`` holds the inference up to the grid masks on plain tensors, so that the
ONNX export (``rtinst.export``, "grid" masks that ``ONNXPredictor`` resizes with the same
function) traces exactly the code the PyTorch model runs.
"""
from typing import Dict, List

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from rtinst.modeling.layers import assemble_masks, grid_masks_to_image
from rtinst.modeling.meta_arch import normalised_batch
from rtinst.utils.comm import mean_over_workers

from .lite_head import HeadOutputs, LiteHead
from .losses import mask_bce_loss, mask_dice_loss, poly1_focal_loss, size_loss
from .peaks import decode_boxes, extract_peaks
from .spanning_set import SpanningSetMasks, gather_coefficients
from .targets import build_batch_targets

__all__ = ["BlitzMask"]

MASK_CROPS = ("box", "none", "loss")  # MODEL.BLITZMASK.MASK_CROP (blitzmask/config.py)


@META_ARCH_REGISTRY.register()
class BlitzMask(nn.Module):
    """Outputs per image ``{"instances": Instances}`` with ``pred_boxes``, ``scores``,
    ``pred_classes`` and full-image ``pred_masks`` at the original resolution."""

    @configurable
    def __init__(self, *, backbone, head: LiteHead, in_feature: str, num_classes: int,
                 pixel_mean, pixel_std, gaussian_alpha: float, size_region: str,
                 focal_alpha: float, focal_beta: float, poly1_epsilon: float,
                 loss_weights: Dict[str, float], topk: int, score_thresh: float,
                 mask_threshold: float, mask_crop: str):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.in_feature = in_feature
        self.stride = backbone.output_shape()[in_feature].stride
        self.num_classes = num_classes
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.gaussian_alpha = gaussian_alpha
        self.size_region = size_region
        self.focal_alpha, self.focal_beta = focal_alpha, focal_beta
        self.poly1_epsilon = poly1_epsilon
        self.loss_weights = loss_weights
        self.topk, self.score_thresh = topk, score_thresh
        if mask_crop not in MASK_CROPS:
            raise ValueError(f"MODEL.BLITZMASK.MASK_CROP must be one of {', '.join(MASK_CROPS)}, "
                             f"got {mask_crop!r}")
        self.crop_loss_to_box = mask_crop in ("box", "loss")
        self.mask_threshold = mask_threshold
        self.crop_masks_to_boxes = mask_crop == "box"
        self.masks = SpanningSetMasks()

    @classmethod
    def from_config(cls, cfg):
        bcfg = cfg.MODEL.BLITZMASK
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        if bcfg.IN_FEATURE not in shapes:
            raise ValueError(f"MODEL.BLITZMASK.IN_FEATURE '{bcfg.IN_FEATURE}' is not a backbone "
                             f"output ({sorted(shapes)})")
        head = LiteHead(shapes[bcfg.IN_FEATURE].channels, bcfg.NUM_CLASSES, bcfg.NUM_BASES,
                        channels=bcfg.HEAD_CHANNELS, num_convs=bcfg.NUM_HEAD_CONVS,
                        norm=bcfg.NORM, prior_prob=bcfg.PRIOR_PROB)
        return {
            "backbone": backbone,
            "head": head,
            "in_feature": bcfg.IN_FEATURE,
            "num_classes": bcfg.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "gaussian_alpha": bcfg.GAUSSIAN_ALPHA,
            "size_region": bcfg.SIZE_REGION,
            "focal_alpha": bcfg.FOCAL_ALPHA,
            "focal_beta": bcfg.FOCAL_BETA,
            "poly1_epsilon": bcfg.POLY1_EPSILON,
            "loss_weights": {
                "loss_heatmap": bcfg.HEATMAP_LOSS_WEIGHT,
                "loss_size_l1": bcfg.SIZE_L1_LOSS_WEIGHT,
                "loss_size_iou": bcfg.SIZE_IOU_LOSS_WEIGHT,
                "loss_mask_bce": bcfg.MASK_BCE_LOSS_WEIGHT,
                "loss_mask_dice": bcfg.MASK_DICE_LOSS_WEIGHT,
            },
            "topk": bcfg.TEST.TOPK,
            "score_thresh": bcfg.TEST.SCORE_THRESH,
            "mask_threshold": bcfg.TEST.MASK_THRESHOLD,
            "mask_crop": bcfg.MASK_CROP,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        return normalised_batch(batched_inputs, self.pixel_mean, self.pixel_std,
                                self.backbone.size_divisibility)

    def predict_maps(self, images: torch.Tensor) -> HeadOutputs:
        """Y, D, Lambda, B on the whole map for a normalised (B, 3, H, W) batch (training)."""
        return self.head(self.backbone(images)[self.in_feature])

    def forward(self, batched_inputs: List[Dict]):
        images = self.preprocess_image(batched_inputs)
        if self.training:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            return self.losses(self.predict_maps(images.tensor), gt_instances)
        features = self.backbone(images.tensor)[self.in_feature]
        heatmaps, spanning_sets = self.head.heatmap(features), self.head.spanning_set(features)
        results = []
        for i, (inputs, image_size) in enumerate(zip(batched_inputs, images.image_sizes)):
            output_size = (inputs.get("height", image_size[0]), inputs.get("width", image_size[1]))
            outputs = self.inference_tensors(features[i], heatmaps[i], spanning_sets[i],
                                             image_size)
            results.append({"instances": self.instances(*outputs, image_size, output_size)})
        return results

    def inference_tensors(self, feature: torch.Tensor, heatmap: torch.Tensor,
                          spanning_set: torch.Tensor, image_size):
        """One image's (N, 4) boxes in input pixels, (N,) scores, (N,) classes and (N, h, w)
        mask logits on the stride grid, from its (C, h, w) FPN ``feature``, heatmap logits and
        Spanning Set; peaks are searched where the picture is, the top-left ``image_size``
        (h, w; ints, or a tensor inside an exported graph) of the padded input."""
        peaks = extract_peaks(heatmap, self.topk, self.score_thresh, self.stride, image_size)
        sizes, coefficients = self.head.at_cells(feature, peaks.cells)
        boxes = decode_boxes(sizes, peaks.cells, feature.shape[2], self.stride)
        return boxes, peaks.scores, peaks.classes, self.masks(coefficients, spanning_set)

    def instances(self, boxes, scores, classes, mask_logits, input_size, output_size):
        """``Instances`` at ``output_size`` (h, w) from ``inference_tensors``' outputs for a
        picture filling ``input_size`` (h, w) of the input: boxes scaled and clipped, masks
        resized once from the grid, thresholded (and cropped to the boxes: ``MASK_CROP`` box)."""
        instances = Instances(output_size)
        instances.pred_boxes = Boxes(boxes)
        instances.pred_boxes.scale(output_size[1] / input_size[1], output_size[0] / input_size[0])
        instances.pred_boxes.clip(output_size)
        instances.scores = scores
        instances.pred_classes = classes
        instances.pred_masks = grid_masks_to_image(
            mask_logits, self.stride, input_size, output_size, self.mask_threshold,
            instances.pred_boxes.tensor if self.crop_masks_to_boxes else None)
        return instances

    # the export contract (rtinst.export.AnySizePipeline): masks leave the graph as grid logits
    export_output_names = ("boxes", "scores", "classes", "masks")
    export_mask_format = "grid"

    def export_outputs(self, images: torch.Tensor, image_size: torch.Tensor):
        """``inference_tensors`` for a normalised (1, 3, H, W) canvas whose top-left
        ``image_size`` holds the picture."""
        features = self.backbone(images)[self.in_feature]
        # squeeze, not [0]: in ONNX indexing copies the map (a Gather), squeezing does not
        return self.inference_tensors(features.squeeze(0),
                                      self.head.heatmap(features).squeeze(0),
                                      self.head.spanning_set(features).squeeze(0), image_size)

    def export_metadata(self) -> Dict[str, str]:
        """What ``ONNXPredictor`` needs to resize the grid masks as ``instances`` does."""
        return {"mask_stride": str(self.stride),
                "mask_crop_to_boxes": str(self.crop_masks_to_boxes)}

    def losses(self, outputs: HeadOutputs, gt_instances: List[Instances]):
        """Sec. 2.2's losses, each weighted by its ``MODEL.BLITZMASK.*_LOSS_WEIGHT``. The
        number of instances that normalises them is averaged over the workers, so that several
        processes average like one. The mask cross-entropy is averaged over the instance's box
        (MASK_CROP "box", whose inference crops to the predicted box, or "loss") or over the
        whole map ("none": the paper's Fig. 1 crops nothing at inference; Sec. 2.2 names no
        region for the loss)."""
        height, width = outputs.heatmap.shape[-2:]
        targets = build_batch_targets(
            gt_instances, num_classes=self.num_classes, height=height, width=width,
            stride=self.stride, alpha=self.gaussian_alpha, size_region=self.size_region,
        )
        local_instances = outputs.heatmap.new_tensor(float(sum(len(t.classes) for t in targets)))
        num_instances = mean_over_workers(local_instances).clamp(min=1.0)
        heatmap_loss = poly1_focal_loss(
            outputs.heatmap, torch.stack([t.heatmap for t in targets]),
            self.focal_alpha, self.focal_beta, self.poly1_epsilon,
        ) / num_instances

        sizes_pred, sizes_target, weights = [], [], []
        mask_logits, mask_targets, regions = [], [], []
        for i, t in enumerate(targets):
            instance, cell = t.size_weights.flatten(1).nonzero(as_tuple=True)
            sizes_pred.append(outputs.sizes[i].flatten(1)[:, cell].t())
            sizes_target.append(t.sizes.flatten(2)[instance, :, cell])
            weights.append(t.size_weights.flatten(1)[instance, cell])
            cells = t.peaks[:, 1] * width + t.peaks[:, 0]
            mask_logits.append(assemble_masks(gather_coefficients(outputs.coefficients[i], cells),
                                              outputs.spanning_set[i]))
            mask_targets.append(t.masks)
            regions.append(t.box_regions if self.crop_loss_to_box
                           else torch.ones_like(t.box_regions))
        l1, iou = size_loss(torch.cat(sizes_pred), torch.cat(sizes_target), torch.cat(weights))
        mask_logits = torch.cat(mask_logits)
        mask_targets, regions = torch.cat(mask_targets), torch.cat(regions)
        if len(mask_logits):
            # the mask losses average over this worker's instances: rescaled to all workers'
            share = local_instances / num_instances
            bce = mask_bce_loss(mask_logits, mask_targets, regions) * share
            dice = mask_dice_loss(mask_logits, mask_targets) * share
        else:  # no instance in the batch: zero losses that keep the graph
            bce = dice = outputs.coefficients.sum() * 0 + outputs.spanning_set.sum() * 0
        losses = {"loss_heatmap": heatmap_loss, "loss_size_l1": l1, "loss_size_iou": iou,
                  "loss_mask_bce": bce, "loss_mask_dice": dice}
        return {name: loss * self.loss_weights[name] for name, loss in losses.items()}
