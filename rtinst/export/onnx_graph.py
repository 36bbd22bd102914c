"""One module traced to one ONNX file: named inputs and outputs, the ONNX checker, metadata."""
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

__all__ = ["write_graph"]


def write_graph(module: nn.Module, example, path: Path, input_names, output_names, props: dict,
                opset: int, dynamic_axes=None) -> Path:
    """Traces ``module`` on the ``example`` inputs to ``path`` with these input/output names
    (and ``dynamic_axes``, as ``torch.onnx.export`` takes them), checks it with the ONNX checker
    and stores ``props`` ({str: str}) as its metadata_props."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(module, example, str(path), input_names=list(input_names),
                          output_names=list(output_names), opset_version=opset, dynamo=False,
                          dynamic_axes=dynamic_axes)
    graph = onnx.load(str(path))
    for output, name in zip(graph.graph.output, output_names):
        if output.name != name:  # a parameter or constant returned as it is keeps its own name
            graph.graph.node.append(onnx.helper.make_node("Identity", [output.name], [name]))
            output.name = name
    onnx.checker.check_model(graph, full_check=True)
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(path))
    return path
