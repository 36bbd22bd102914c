"""ONNX export of a whole instance-segmentation pipeline for one fixed input size (BlitzMask
Sec. 2.1: everything, post-processing included, runs in a standard runtime).

The graph takes one uint8 (H, W, 3) image in the model's channel order (``INPUT.FORMAT``) and
the (h, w) int64 size of the picture inside it (the rest being letterbox padding), and returns
``boxes`` (N, 4) XYXY, ``scores`` (N,), ``classes`` (N,) and ``masks`` (N, H, W) uint8, with N
decided inside the graph (peaks above the score threshold). It contains the
preprocessing (HWC -> CHW, normalisation), the network and the model's own post-processing.

A model is exportable when it has ``pixel_mean``/``pixel_std``, ``predict_maps(images)`` (the
network on a normalised batch) and ``inference_tensors(maps, input_size, output_size)`` (one
image's boxes, scores, classes and bool masks from its maps), as ``blitzmask.BlitzMask``.
"""
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

__all__ = ["EXPORT_OUTPUTS", "INPUT_NAMES", "FixedSizePipeline", "export_onnx"]

EXPORT_OUTPUTS = ("boxes", "scores", "classes", "masks")
INPUT_NAMES = ("image", "image_size")


class FixedSizePipeline(nn.Module):
    """uint8 (H, W, 3) image -> (boxes, scores, classes, masks) with the model's inference code."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        for attribute in ("predict_maps", "inference_tensors", "pixel_mean", "pixel_std"):
            if not hasattr(model, attribute):
                raise TypeError(f"{type(model).__name__} cannot be exported to ONNX: it has no "
                                f"'{attribute}' (see rtinst/export/onnx_export.py)")
        size_divisibility = getattr(model.backbone, "size_divisibility", 1) or 1
        if height % size_divisibility or width % size_divisibility:
            raise ValueError(f"export size {height}x{width} must be a multiple of the "
                             f"backbone's size divisibility {size_divisibility}")
        self.model = model
        self.size = (height, width)
        self.eval()

    def forward(self, image: torch.Tensor, image_size: torch.Tensor = None):
        """``image`` (H, W, 3) uint8; ``image_size`` (2,) int64: the (h, w) top-left part that
        holds the picture, the rest being padding (default: all of it)."""
        x = image.permute(2, 0, 1).float()
        x = ((x - self.model.pixel_mean) / self.model.pixel_std)[None]
        maps = self.model.predict_maps(x)
        one_image = type(maps)(*(m[0] for m in maps))
        boxes, scores, classes, masks = self.model.inference_tensors(one_image, self.size,
                                                                     self.size, image_size)
        return boxes, scores, classes, masks.to(torch.uint8)


def export_onnx(model: nn.Module, path, height: int, width: int, input_format: str = "BGR",
                opset: int = 17) -> Path:
    """Writes ``model``'s ``FixedSizePipeline`` at ``height`` x ``width`` to ``path``, checks it
    with the ONNX checker and records in its metadata ``input_format`` (the channel order the
    graph expects), the size and the colour that pads letterboxed images (the pixel mean).
    Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = FixedSizePipeline(model, height, width)
    example = (torch.zeros(height, width, 3, dtype=torch.uint8), torch.tensor([height, width]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(pipeline, example, str(path), input_names=list(INPUT_NAMES),
                          output_names=list(EXPORT_OUTPUTS), opset_version=opset,
                          dynamo=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    pad_value = ",".join(str(round(float(v))) for v in model.pixel_mean.flatten())
    onnx.helper.set_model_props(graph, {"input_format": input_format,
                                        "input_size": f"{height},{width}",
                                        "pad_value": pad_value})
    onnx.save(graph, str(path))
    return path
