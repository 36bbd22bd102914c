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
                opset: int = 17) -> Path:
    """Writes ``model``'s ``export_pipeline`` at ``height`` x ``width`` to ``path``, checks it
    with the ONNX checker and records in its metadata ``input_format`` (the channel order the
    graph expects), the size, the colour that pads letterboxed images (the pixel mean) and how a
    picture is fitted to the size (the pipeline's ``picture_fit``: "letterbox", the default, or
    "stretch" for a model that resizes every picture to its square input anyway). Returns the
    path. A video pipeline writes ``<stem>.<graph>.onnx`` next to ``path`` for each of its graphs
    instead (``export_video_graphs``) and returns the keyframe graph's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = export_pipeline(model, height, width)
    example = (torch.zeros(height, width, 3, dtype=torch.uint8), torch.tensor([height, width]))
    if not hasattr(model, "pixel_mean"):
        raise TypeError(f"{type(model).__name__} cannot be exported to ONNX: it has no "
                        "'pixel_mean' (the colour letterboxed pictures are padded with)")
    pad_value = ",".join(str(round(float(v))) for v in model.pixel_mean.flatten())
    props = {"input_format": input_format, "input_size": f"{height},{width}",
             "pad_value": pad_value, "picture_fit": getattr(pipeline, "picture_fit", "letterbox")}
    if declares_graphs(pipeline):
        return export_video_graphs(pipeline, path, example, props, opset)
    return write_graph(pipeline, example, path, INPUT_NAMES, EXPORT_OUTPUTS, props, opset)
