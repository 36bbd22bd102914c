"""ONNX export of a model's ``export_pipeline`` for one fixed input size, checked with the ONNX
checker, with the input format, size and letterbox colour in the graph's metadata; a video
pipeline (``graphs()``, see ``graphs.py``) as one file per graph (``video_export.py``)."""
from pathlib import Path

import torch
from torch import nn

from .graphs import declares_graphs
from .onnx_graph import write_graph
from .pipeline import EXPORT_OUTPUTS, INPUT_NAMES, export_pipeline
from .video_export import export_video_graphs

__all__ = ["export_onnx"]


def export_onnx(model: nn.Module, path, height: int, width: int, input_format: str = "BGR",
                opset: int = 17, resize=None) -> Path:
    """Writes ``model``'s ``export_pipeline`` at ``height`` x ``width`` to ``path``, checks it
    with the ONNX checker and records in its metadata ``input_format`` (the channel order the
    graph expects), the size, the colour that pads pictures (the pixel mean), the pipeline's
    ``mask_format`` (and ``mask_threshold``, and the pipeline's own ``metadata``), and how a
    photo is fitted to the size (``picture_fit``): the pipeline's own ("stretch" for a model
    that resizes every picture to its square input anyway), else "shortest_edge" with
    ``resize`` = (min size, max size), the ``Predictor``'s ``ResizeShortestEdge``
    (``INPUT.MIN_SIZE_TEST``, ``INPUT.MAX_SIZE_TEST``), else "letterbox" (the largest size that
    fits). Returns the path. A video pipeline writes ``<stem>.<graph>.onnx`` next to ``path``
    for each of its graphs instead (``export_video_graphs``) and returns the keyframe graph's
    file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = export_pipeline(model, height, width)
    example = (torch.zeros(height, width, 3, dtype=torch.uint8), torch.tensor([height, width]))
    if not hasattr(model, "pixel_mean"):
        raise TypeError(f"{type(model).__name__} cannot be exported to ONNX: it has no "
                        "'pixel_mean' (the colour letterboxed pictures are padded with)")
    pad_value = ",".join(str(round(float(v))) for v in model.pixel_mean.flatten())
    fit = getattr(pipeline, "picture_fit", None) or ("shortest_edge" if resize else "letterbox")
    props = {"input_format": input_format, "input_size": f"{height},{width}",
             "pad_value": pad_value, "picture_fit": fit,
             "mask_format": getattr(pipeline, "mask_format", "image")}
    if fit == "shortest_edge":
        props["resize_shortest_edge"] = ",".join(str(int(v)) for v in resize)
    if hasattr(pipeline, "mask_threshold"):
        props["mask_threshold"] = repr(float(pipeline.mask_threshold))
    props.update(getattr(pipeline, "metadata", {}))
    if declares_graphs(pipeline):
        return export_video_graphs(pipeline, path, example, props, opset)
    output_names = getattr(pipeline, "output_names", EXPORT_OUTPUTS)
    dynamic_axes = None
    if getattr(pipeline, "any_size", False):
        props["size_divisibility"] = str(pipeline.size_divisibility)
        dynamic_axes = {INPUT_NAMES[0]: {0: "height", 1: "width"}}
    return write_graph(pipeline, example, path, INPUT_NAMES, output_names, props, opset,
                       dynamic_axes)
