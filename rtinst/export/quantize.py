"""INT8 quantization of an exported pipeline with ONNX Runtime's tools: dynamic (weights INT8,
activations quantized on the fly) or static (activations calibrated on sample images, after ONNX
Runtime's ``quant_pre_process``: shape inference and graph optimisation, so that every
convolution's tensors have known ranks; QDQ format, per-channel weights).

Static weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without VNNI, ONNX
Runtime's uint8 x int8 convolutions add pairs of products in 16 bits (VPMADDUBSW), which full
8-bit weights can saturate. On the shapes-trained FCOS MobileNetV2-FPN (docs/export.md) the box
AP fell 3.5 below FP32 with 8-bit weights and 2.1 with 7-bit ones on this AVX2 CPU."""
import logging
import tempfile
from pathlib import Path

import onnx
from tqdm import tqdm
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from .onnx_predictor import ONNXPredictor

__all__ = ["quantize_onnx"]


class _LetterboxedImages(CalibrationDataReader):
    """Calibration inputs: ``images`` (BGR) prepared as ``ONNXPredictor`` prepares them."""

    def __init__(self, predictor: ONNXPredictor, images):
        self._inputs = [predictor.feeds(*predictor.prepare(image)) for image in images]
        self._iter = iter(self._inputs)
        self._progress = tqdm(total=len(self._inputs), desc="INT8 calibration", unit="img")

    def get_next(self):
        """The next image's inputs (ONNX Runtime runs the model on each: the progress bar
        counts them), None after the last."""
        inputs = next(self._iter, None)
        if inputs is None:
            self._progress.close()
        else:
            self._progress.update()
        return inputs


def _quiet_root_logger_warnings(function, *args, **kwargs):
    """``function(*args, **kwargs)`` with the root logger's warnings held back (ONNX Runtime's
    pre-processing logs its graph optimiser's notes there)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return function(*args, **kwargs)
    finally:
        root.setLevel(level)


def _copy_metadata(source: Path, target: Path):
    props = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    graph = onnx.load(str(target))
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(target))


def quantize_onnx(source, target, mode: str = "dynamic", calibration_images=()) -> Path:
    """Writes an INT8 version of the ``source`` pipeline to ``target``. ``mode`` "dynamic" needs
    nothing else; "static" calibrates activation ranges on ``calibration_images`` (BGR uint8
    arrays, a few dozen typical images). The convolutions are quantized; the post-processing
    (top-k, gathers, resizing) stays in float."""
    source, target = Path(source), Path(target)
    if mode == "dynamic":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8,
                         op_types_to_quantize=["Conv"])
    elif mode == "static":
        images = list(calibration_images)
        if not images:
            raise ValueError("static quantization needs calibration images")
        reader = _LetterboxedImages(ONNXPredictor(source), images)
        with tempfile.TemporaryDirectory() as folder:
            prepared = Path(folder) / source.name
            _quiet_root_logger_warnings(quant_pre_process, str(source), str(prepared),
                                        skip_optimization=True, skip_symbolic_shape=True)
            quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    else:
        raise ValueError(f"quantization mode must be 'dynamic' or 'static', got {mode!r}")
    _copy_metadata(source, target)
    return target
