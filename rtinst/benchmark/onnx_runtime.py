"""ONNX Runtime entries of a benchmark: a PyTorch model exported with ``rtinst.export`` (the whole
pipeline at the benchmark's fixed input size, post-processing included) and timed end to end as
the PyTorch model is, on the same prepared inputs: image tensor -> graph -> instances mapped back
to the original image. ``rtinst.export`` (onnx, onnxruntime) is imported only when used."""

import copy
from pathlib import Path


class ONNXRuntimeModel:
    """An ``ONNXPredictor`` called as a Detectron2 model in eval mode is: ``model([input_dict])``
    with ``input_dict["image"]`` the (3, H, W) uint8 image, already at the graph's size and in its
    channel order, and ``"height"``/``"width"`` the original size (the outputs' frame). Returns
    ``[{"instances": Instances}]`` with full-image masks at the original size."""

    def __init__(self, predictor):
        self.predictor = predictor

    def __call__(self, batched_inputs):
        outputs = []
        for inputs in batched_inputs:
            image = inputs["image"].permute(1, 2, 0).cpu().numpy()  # CHW tensor -> HWC array
            size = image.shape[:2]
            if size != (self.predictor.height, self.predictor.width):
                raise ValueError(
                    f"image is {size[0]}x{size[1]}, the ONNX graph takes "
                    f"{self.predictor.height}x{self.predictor.width}"
                )
            output_size = (inputs.get("height", size[0]), inputs.get("width", size[1]))
            outputs.append(self.predictor.predict(image, size, output_size))
        return outputs


def export_runtime_models(model, folder, height, width, input_format, num_threads,
                          int8=None, calibration_images=()):
    """``[(runtime label, quantization, ONNXRuntimeModel)]``: ``model`` (eval mode, any device)
    exported at ``height`` x ``width`` to ``folder`` and run by ONNX Runtime on the CPU with
    ``num_threads`` intra-op threads; with ``int8`` ("dynamic" or "static", the latter calibrated
    on ``calibration_images``, BGR uint8 arrays) also its INT8 version. Raises TypeError (or
    ValueError) for a model that cannot be exported (``rtinst.export.export_pipeline``)."""
    from rtinst.export import (ONNXPredictor, VideoONNXPredictor, export_onnx, export_pipeline,
                               quantize_onnx)
    from rtinst.export.graphs import declares_graphs
    from rtinst.export.video_export import graph_files

    folder = Path(folder)
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()  # exported with a CPU example input
    asked = folder / "model.onnx"  # (a video export writes model.keyframe.onnx, model.frame.onnx)
    path = export_onnx(model, asked, height, width, input_format=input_format)
    # a video model's keyframe and frame graphs run in turn, the images taken as one video's
    # frames in order
    video = declares_graphs(export_pipeline(model, height, width))
    predictor = VideoONNXPredictor if video else ONNXPredictor
    entries = [("onnxruntime", None, ONNXRuntimeModel(predictor(path, num_threads)))]
    if int8:
        target = folder / f"int8_{int8}" / "model.onnx"
        target.parent.mkdir(exist_ok=True)
        sources = graph_files(asked).values() if video else [path]
        for source in sources:  # (a video set keeps its file names: its metadata names them)
            quantized = quantize_onnx(source, target.with_name(Path(source).name), int8,
                                      calibration_images)
        int8_path = graph_files(target)["keyframe"] if video else quantized
        entries.append(
            ("onnxruntime int8", int8, ONNXRuntimeModel(predictor(int8_path, num_threads)))
        )
    return entries

