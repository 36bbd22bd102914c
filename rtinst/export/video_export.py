"""ONNX export of a video pipeline (``graphs.py``): one file per graph, ``<stem>.<role>.onnx``
next to the path asked for, the state as explicit inputs ``state.<name>`` and outputs
``next_state.<name>``, the whole set described in each file's metadata (``video_metadata.py``)."""
from pathlib import Path

import onnx
import torch

from .graphs import GRAPH_ROLES, state_input_name, state_output_name, video_graphs
from .onnx_graph import write_graph
from .pipeline import EXPORT_OUTPUTS, INPUT_NAMES
from .video_metadata import VideoMetadata

__all__ = ["export_video_graphs", "graph_files"]


def graph_files(path) -> dict:
    """{role: the file ``export_video_graphs`` writes for it} for the path asked for."""
    path = Path(path)
    stem = path.stem if path.suffix == ".onnx" else path.name
    return {role: path.with_name(f"{stem}.{role}.onnx") for role in GRAPH_ROLES}


def _state(module, inputs, where, writes):
    """{state name: tensor} that ``module`` writes when run on ``inputs``."""
    with torch.no_grad():
        outputs = module(*inputs)
    if len(outputs) != len(EXPORT_OUTPUTS) + len(writes):
        raise ValueError(f"{where} returns {len(outputs)} tensors; expected "
                         f"{list(EXPORT_OUTPUTS)} and the state {list(writes)}")
    return dict(zip(writes, outputs[len(EXPORT_OUTPUTS):]))


def export_video_graphs(pipeline, path, example, props: dict, opset: int) -> Path:
    """Writes each of ``pipeline.graphs()`` (traced on ``example`` and the state the keyframe
    graph computes from it) with ``props`` and the set's metadata; returns the keyframe file."""
    graphs, where = video_graphs(pipeline), type(pipeline).__name__
    files = graph_files(path)
    key, frame = graphs["keyframe"], graphs["frame"]
    state = _state(key.module, example, f"{where}'s keyframe graph", key.state_outputs)
    for name, value in _state(frame.module, (*example, *(state[n] for n in frame.state_inputs)),
                              f"{where}'s frame graph", frame.state_outputs).items():
        if value.shape != state[name].shape or value.dtype != state[name].dtype:
            raise ValueError(f"{where}'s frame graph writes state {name!r} as {value.dtype} "
                             f"{list(value.shape)}; the keyframe graph as {state[name].dtype} "
                             f"{list(state[name].shape)}")
    metadata = VideoMetadata(
        keyframe_interval=pipeline.keyframe_interval,
        files={role: file.name for role, file in files.items()},
        graphs={role: (tuple(s.state_inputs), tuple(s.state_outputs))
                for role, s in graphs.items()},
        state={name: {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
               for name, value in state.items()})
    for role, spec in graphs.items():
        inputs = [*INPUT_NAMES, *map(state_input_name, spec.state_inputs)]
        write_graph(spec.module, (*example, *(state[n] for n in spec.state_inputs)), files[role],
                    inputs, [*EXPORT_OUTPUTS, *map(state_output_name, spec.state_outputs)],
                    {**props, "graph": role, "video": metadata.to_json()}, opset)
        unused = sorted(set(inputs) - {i.name for i in onnx.load(str(files[role])).graph.input})
        if unused:
            raise ValueError(f"{where}'s {role} graph does not use its inputs {unused} (the "
                             "exporter drops them): use them, or do not declare that state")
    return files["keyframe"]
