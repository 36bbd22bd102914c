"""ONNX export of a model's ``export_pipeline`` for one fixed input size, checked with the ONNX
checker, with the input format, size and letterbox colour in the graph's metadata."""
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from .pipeline import EXPORT_OUTPUTS, INPUT_NAMES, export_pipeline

__all__ = ["export_onnx"]


def export_onnx(model: nn.Module, path, height: int, width: int, input_format: str = "BGR",
                opset: int = 17) -> Path:
    """Writes ``model``'s ``export_pipeline`` at ``height`` x ``width`` to ``path``, checks it
    with the ONNX checker and records in its metadata ``input_format`` (the channel order the
    graph expects), the size, the colour that pads letterboxed images (the pixel mean) and how a
    picture is fitted to the size (the pipeline's ``picture_fit``: "letterbox", the default, or
    "stretch" for a model that resizes every picture to its square input anyway). Returns the
    path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = export_pipeline(model, height, width)
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
                                        "pad_value": pad_value,
                                        "picture_fit": getattr(pipeline, "picture_fit",
                                                               "letterbox")})
    onnx.save(graph, str(path))
    return path
