"""YOLACT's whole inference as one traceable function for the ONNX export (``rtinst.export``):
the letterboxed uint8 image's picture part resized to the network input (as the PyTorch model
does), the network, Fast NMS, mask assembly, crop and re-scoring (``YOLACTInference.detect``),
and the masks mapped onto the fixed-size canvas the picture sits in.

On the canvas the picture fills the top-left (h, w) (``image_size``, an input of the graph;
``ONNXPredictor`` stretches photos to the whole canvas, ``picture_fit``).
The masks are sampled from the prototype-resolution probabilities with ``grid_sample``
(bilinear, edge-clamped: what ``F.interpolate`` to (h, w) computes) over the whole canvas and
zeroed outside the picture, so that the graph's sizes stay fixed while h and w vary.
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["YOLACTExportPipeline"]


class YOLACTExportPipeline(nn.Module):
    """(H, W, 3) uint8 canvas, (2,) int64 picture size -> boxes (N, 4) XYXY in canvas pixels,
    scores (N,), classes (N,), masks (N, H, W) uint8."""

    # ONNXPredictor resizes a picture to the graph's size (no letterbox): the model resizes it to
    # its square input anyway, and one resize of the photo (not two) is what the PyTorch
    # predictor does
    picture_fit = "stretch"

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        if model.preserve_aspect_ratio:
            raise ValueError("MODEL.YOLACT.PRESERVE_ASPECT_RATIO: the export resizes every "
                             "picture to the square MODEL.YOLACT.INPUT_SIZE; set it False")
        self.model = model
        self.size = (height, width)
        self.eval()

    def forward(self, image: torch.Tensor, image_size: torch.Tensor):
        return self.detections(*self.model.predict(self.network_input(image, image_size)),
                               image_size)

    def network_input(self, image: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
        """The canvas's picture resized to the square network input and normalised."""
        model, side = self.model, self.model.input_size
        h, w = image_size[0], image_size[1]
        x = image.permute(2, 0, 1)[None, :, :h, :w].float()
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return (x - model.pixel_mean) / model.pixel_std

    def detections(self, outputs, anchors: torch.Tensor, image_size: torch.Tensor):
        """Fast NMS, masks and re-scoring on the network's outputs, mapped onto the canvas."""
        model, side = self.model, self.model.input_size
        height, width = self.size
        h, w = image_size[0], image_size[1]
        boxes, scores, classes, masks, _ = model.inference.detect(
            outputs.box_deltas[0], outputs.class_logits[0], outputs.coefficients[0],
            outputs.prototypes[0], anchors, (side, side), model.mask_iou_head)
        hf, wf = h.to(boxes.dtype), w.to(boxes.dtype)
        boxes = boxes * torch.stack([wf, hf, wf, hf]) / side
        boxes = torch.minimum(boxes.clamp(min=0), torch.stack([wf, hf, wf, hf]))
        ys = torch.arange(height, dtype=boxes.dtype)
        xs = torch.arange(width, dtype=boxes.dtype)
        grid = torch.stack(torch.meshgrid((xs + 0.5) / wf * 2 - 1, (ys + 0.5) / hf * 2 - 1,
                                          indexing="xy"), dim=-1)[None]
        # (one empty mask more: grid_sample refuses a tensor without channels)
        masks = torch.cat([masks, masks.new_zeros(1, *masks.shape[1:])])
        canvas = F.grid_sample(masks[None], grid, mode="bilinear", padding_mode="border",
                               align_corners=False)[0, :-1]
        inside = (ys < hf)[:, None] & (xs < wf)[None, :]
        masks = (canvas > model.inference.mask_threshold) & inside
        return boxes, scores, classes, masks.to(torch.uint8)
