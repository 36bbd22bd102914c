"""The pipeline an ONNX export traces: a model's whole inference (preprocessing, network,
post-processing) as one function of a fixed-size uint8 image (BlitzMask Sec. 2.1: everything,
post-processing included, runs in a standard runtime), and the registry lookup that says which
pipeline a model has.

The pipeline takes one uint8 (H, W, 3) image in the model's channel order (``INPUT.FORMAT``) and
the (h, w) int64 size of the picture inside it (the rest being letterbox padding), and returns
``boxes`` (N, 4) XYXY, ``scores`` (N,), ``classes`` (N,) and ``masks`` (N, H, W) uint8, with N
decided inside the graph (peaks above the score threshold).

A model is exportable when its method registered a pipeline for its class
(``rtinst.register_method(export_pipelines={"MetaArch": FixedSizePipeline})``).
``FixedSizePipeline`` serves models that have ``pixel_mean``/``pixel_std``,
``predict_maps(images)`` (the network on a normalised batch) and ``inference_tensors(maps,
input_size, output_size)`` (one image's boxes, scores, classes and bool masks from its maps).
"""
import torch
from torch import nn

from rtinst.methods import find_part

__all__ = ["EXPORT_OUTPUTS", "INPUT_NAMES", "FixedSizePipeline", "export_pipeline"]

EXPORT_OUTPUTS = ("boxes", "scores", "classes", "masks")
INPUT_NAMES = ("image", "image_size")


class FixedSizePipeline(nn.Module):
    """uint8 (H, W, 3) image -> (boxes, scores, classes, masks) with the model's inference code."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        for attribute in ("predict_maps", "inference_tensors", "pixel_mean", "pixel_std"):
            if not hasattr(model, attribute):
                raise TypeError(f"{type(model).__name__} cannot be exported to ONNX: it has no "
                                f"'{attribute}' (see rtinst/export/pipeline.py)")
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


def export_pipeline(model: nn.Module, height: int, width: int) -> nn.Module:
    """The pipeline registered for ``model``'s class, for ``height`` x ``width`` images; a
    ``ConfigError`` (a ``ValueError``) when none is."""
    pipeline = find_part("export_pipelines", type(model).__name__, "MODEL.META_ARCHITECTURE")
    return pipeline(model, height, width)

