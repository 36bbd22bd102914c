"""The pipeline an ONNX export traces: a model's whole inference (preprocessing, network,
post-processing) as one function of a fixed-size uint8 image (BlitzMask Sec. 2.1: everything,
post-processing included, runs in a standard runtime), and the registry lookup that says which
pipeline a model has.

A pipeline takes one uint8 (H, W, 3) canvas in the model's channel order (``INPUT.FORMAT``) and
the (h, w) int64 size of the picture in its top-left corner (the rest is padding, zero after
normalisation as in Detectron2's padded batches), and returns ``boxes`` (N, 4) XYXY in canvas
pixels, ``scores`` (N,), ``classes`` (N,) and masks in the pipeline's ``mask_format``, with N
decided inside the graph:

* "image" (``FixedSizePipeline``): ``masks`` (N, H, W) uint8 on the canvas;
* "box" (``AnySizePipeline``): ``masks`` (N, R, R) float probabilities inside each box, which
  ``ONNXPredictor`` pastes at the original resolution with Detectron2's ``detector_postprocess``
  as the PyTorch models do (a model without masks returns none: ``mask_format`` "none");
* "grid" (``AnySizePipeline``): ``masks`` (N, H / s, W / s) logits on the model's stride-s grid
  of the canvas (metadata ``mask_stride``, ``mask_crop_to_boxes``), which ``ONNXPredictor``
  resizes once to the original resolution, thresholds and crops with
  ``rtinst.modeling.layers.grid_masks_to_image``, as the PyTorch model does;

then any further outputs the model names (``export_output_names``, e.g. "mask_scores").

A model is exportable when its method registered a pipeline for its class
(``rtinst.register_method(export_pipelines={"MetaArch": FixedSizePipeline})``).
``FixedSizePipeline`` serves models that have ``pixel_mean``/``pixel_std``,
``predict_maps(images)`` (the network on a normalised batch) and ``inference_tensors(maps,
input_size, output_size)`` (one image's boxes, scores, classes and bool masks from its maps);
``AnySizePipeline`` models that have ``export_outputs(images, image_size)`` (the outputs above
for a normalised (1, 3, H, W) canvas) and ``export_output_names`` (and, for masks other than
"box", ``export_mask_format`` and ``export_metadata()``, {str: str} for the graph's metadata).
"""
import torch
from torch import nn

from rtinst.methods import find_part

__all__ = ["EXPORT_OUTPUTS", "INPUT_NAMES", "AnySizePipeline", "FixedSizePipeline",
           "export_pipeline", "normalised_canvas", "size_divisibility"]

EXPORT_OUTPUTS = ("boxes", "scores", "classes", "masks")
INPUT_NAMES = ("image", "image_size")


def normalised_canvas(image: torch.Tensor, image_size, pixel_mean, pixel_std) -> torch.Tensor:
    """(1, 3, H, W) float: the uint8 (H, W, 3) canvas normalised, zero outside its top-left
    ``image_size`` (h, w) picture, as Detectron2 pads a normalised batch."""
    x = (image.permute(2, 0, 1).float() - pixel_mean) / pixel_std
    if image_size is not None:
        rows = torch.arange(image.shape[0], device=image.device) < image_size[0]
        cols = torch.arange(image.shape[1], device=image.device) < image_size[1]
        x = x * (rows[:, None] & cols[None, :])
    return x[None]


def size_divisibility(model: nn.Module) -> int:
    """What the model's backbone pads inputs to a multiple of (1: nothing)."""
    return getattr(model.backbone, "size_divisibility", 1) or 1


def _check_exportable(model: nn.Module, attributes, height: int, width: int) -> int:
    """The backbone's size divisibility, after checking that ``model`` has ``attributes`` and
    that the size is a multiple of it."""
    for attribute in attributes:
        if not hasattr(model, attribute):
            raise TypeError(f"{type(model).__name__} cannot be exported to ONNX: it has no "
                            f"'{attribute}' (see rtinst/export/pipeline.py)")
    divisibility = size_divisibility(model)
    if height % divisibility or width % divisibility:
        raise ValueError(f"export size {height}x{width} must be a multiple of the "
                         f"backbone's size divisibility {divisibility}")
    return divisibility


class FixedSizePipeline(nn.Module):
    """uint8 (H, W, 3) image -> (boxes, scores, classes, masks) with the model's inference code."""

    mask_format = "image"
    output_names = EXPORT_OUTPUTS

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        _check_exportable(model, ("predict_maps", "inference_tensors", "pixel_mean",
                                  "pixel_std"), height, width)
        self.model = model
        self.size = (height, width)
        self.eval()

    def forward(self, image: torch.Tensor, image_size: torch.Tensor = None):
        """``image`` (H, W, 3) uint8; ``image_size`` (2,) int64: the (h, w) top-left part that
        holds the picture, the rest being padding (default: all of it)."""
        x = normalised_canvas(image, image_size, self.model.pixel_mean, self.model.pixel_std)
        maps = self.model.predict_maps(x)
        one_image = type(maps)(*(m[0] for m in maps))
        boxes, scores, classes, masks = self.model.inference_tensors(one_image, self.size,
                                                                     self.size, image_size)
        return boxes, scores, classes, masks.to(torch.uint8)


class AnySizePipeline(nn.Module):
    """uint8 (H, W, 3) canvas -> (boxes, scores, classes[, masks: probabilities in each box or
    logits on a grid], *the model's further outputs) in the picture's frame, from the model's
    ``export_outputs``: masks are brought to the original resolution outside the graph, by the
    PyTorch models' own post-processing (Detectron2's ``detector_postprocess``, rtinst's
    ``grid_masks_to_image``).

    The graph takes a canvas of any size divisible by ``size_divisibility`` (``any_size``): only
    the padding Detectron2 adds (to that divisibility) gives the ``Predictor``'s outputs. The
    GroupNorms of the FCOS family's heads average over the whole padded map, and past that
    padding every network's convolutions see computed borders instead of zeros, so a larger
    fixed canvas would shift the features."""

    any_size = True

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.size_divisibility = _check_exportable(
            model, ("export_outputs", "export_output_names", "pixel_mean", "pixel_std"),
            height, width)
        self.model = model
        self.size = (height, width)
        self.output_names = tuple(model.export_output_names)
        self.mask_format = (getattr(model, "export_mask_format", "box")
                            if "masks" in self.output_names else "none")
        self.mask_threshold = getattr(model, "mask_threshold", 0.5)
        self.metadata = model.export_metadata() if hasattr(model, "export_metadata") else {}
        self.eval()

    def forward(self, image: torch.Tensor, image_size: torch.Tensor):
        x = normalised_canvas(image, image_size, self.model.pixel_mean, self.model.pixel_std)
        return tuple(self.model.export_outputs(x, image_size))


def export_pipeline(model: nn.Module, height: int, width: int) -> nn.Module:
    """The pipeline registered for ``model``'s class, for ``height`` x ``width`` images; a
    ``ConfigError`` (a ``ValueError``) when none is."""
    pipeline = find_part("export_pipelines", type(model).__name__, "MODEL.META_ARCHITECTURE")
    return pipeline(model, height, width)

