"""Export to ONNX (whole pipeline, fixed input size), an ONNX Runtime predictor returning
Detectron2 ``Instances``, and INT8 quantization."""
from .onnx_export import EXPORT_OUTPUTS, FixedSizePipeline, export_onnx
from .evaluate import evaluate_onnx
from .onnx_predictor import ONNXPredictor, letterbox
from .parity import Parity, compare_outputs
from .quantize import quantize_onnx

__all__ = ["EXPORT_OUTPUTS", "FixedSizePipeline", "ONNXPredictor", "Parity", "compare_outputs",
           "evaluate_onnx", "export_onnx", "letterbox", "quantize_onnx"]
