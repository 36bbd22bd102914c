"""Multi-graph, stateful export: how a pipeline declares a video model's graphs and keyframe
policy, the names their state tensors take in ONNX, and the stepping through a video that the
ONNX predictor and the PyTorch reference share.

A pipeline without ``graphs()`` exports as one stateless graph. A video pipeline has
``graphs()`` -> ``{"keyframe": GraphSpec, "frame": GraphSpec}`` and an int attribute
``keyframe_interval`` N: frames 0, N, 2N, ... after a reset run the keyframe graph, the others
the frame graph; N = 1: every frame is a keyframe; N = 0: only the first. Both modules take
``(image, image_size, *state inputs)`` and return ``(boxes, scores, classes, masks, *state
outputs)``, the outputs as ``FixedSizePipeline``'s. The state is a dict of named tensors of
fixed shapes that the keyframe graph writes afresh (it reads none); the frame graph reads some
of them and may rewrite some, the others stay (e.g. MobileInst's frame graph reads the
keyframe's kernels and writes nothing; a frame counter is read and rewritten).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from torch import nn

from .pipeline import EXPORT_OUTPUTS

__all__ = ["GRAPH_ROLES", "GraphSpec", "PipelineVideo", "VideoSteps", "check_keyframe_interval",
           "check_roles", "declares_graphs", "is_keyframe", "state_input_name",
           "state_output_name", "video_graphs"]

GRAPH_ROLES = ("keyframe", "frame")


@dataclass(frozen=True)
class GraphSpec:
    """One graph of a video pipeline: its module and the names of the state it reads/writes."""

    module: nn.Module
    state_inputs: Tuple[str, ...] = ()
    state_outputs: Tuple[str, ...] = ()


def state_input_name(name: str) -> str:
    """The ONNX input carrying state ``name`` into a graph."""
    return f"state.{name}"


def state_output_name(name: str) -> str:
    """The ONNX output carrying a graph's new value of state ``name``."""
    return f"next_state.{name}"


def is_keyframe(frame_index: int, keyframe_interval: int) -> bool:
    """Whether frame ``frame_index`` (0 = the first after a reset) is a keyframe."""
    if frame_index == 0:
        return True
    return keyframe_interval > 0 and frame_index % keyframe_interval == 0


def declares_graphs(pipeline) -> bool:
    """Whether ``pipeline`` (a class or an instance) is a video pipeline."""
    return hasattr(pipeline, "graphs")


def check_keyframe_interval(value, where: str) -> int:
    """``value`` if it is an int >= 0, else a ``ValueError`` naming ``where`` (if any)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where + ': ' if where else ''}keyframe_interval must be an int >= 0 "
                         f"(0: only the first frame is a keyframe, 1: every frame), got {value!r}")
    return value


def check_roles(graphs: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]], where: str):
    """A ``ValueError`` naming ``where`` unless ``graphs`` ({role: (state inputs, state
    outputs)}) has the two roles, a keyframe that reads no state and writes all that the frame
    graph reads or writes."""
    if tuple(graphs) != GRAPH_ROLES:
        raise ValueError(f"{where}: the graphs must be {list(GRAPH_ROLES)} in this order, got "
                         f"{list(graphs)}")
    (key_in, key_out), (frame_in, _) = graphs["keyframe"], graphs["frame"]
    if key_in:
        raise ValueError(f"{where}: the keyframe graph reads state {list(key_in)}; a keyframe "
                         "starts afresh and reads none")
    for kind, names in (("reads", frame_in), ("writes", graphs["frame"][1])):
        missing = sorted(set(names) - set(key_out))
        if missing:
            raise ValueError(f"{where}: the frame graph {kind} state {missing} that the "
                             "keyframe graph does not write (the keyframe's state is the whole "
                             "state)")


def video_graphs(pipeline) -> Dict[str, GraphSpec]:
    """``pipeline.graphs()`` checked (``check_roles``, ``check_keyframe_interval``)."""
    where = type(pipeline).__name__
    graphs = dict(pipeline.graphs())
    for role, spec in graphs.items():
        if not isinstance(spec, GraphSpec) or not isinstance(spec.module, nn.Module):
            raise TypeError(f"{where}.graphs()[{role!r}] must be a GraphSpec of an nn.Module, "
                            f"got {spec!r}")
    check_roles({role: (tuple(s.state_inputs), tuple(s.state_outputs))
                 for role, s in graphs.items()}, f"{where}.graphs()")
    check_keyframe_interval(getattr(pipeline, "keyframe_interval", None), where)
    return graphs


class VideoSteps:
    """Which graph runs on the next frame, and the state carried from frame to frame.

    ``graphs``: {role: (state inputs, state outputs)}; ``step(run)`` calls ``run(role, [the
    state it reads])`` -> ``(outputs, [the state it writes])`` and returns ``outputs``."""

    def __init__(self, graphs, keyframe_interval: int):
        self.graphs = graphs
        self.keyframe_interval = keyframe_interval
        self.reset()

    def reset(self):
        """Back to before a video's first frame (no state; the next frame is a keyframe)."""
        self.frame_index, self.state, self.last_graph = 0, {}, None

    def next_graph(self) -> str:
        """The role of the graph the next frame runs."""
        return "keyframe" if is_keyframe(self.frame_index, self.keyframe_interval) else "frame"

    def step(self, run):
        role = self.next_graph()
        reads, writes = self.graphs[role]
        outputs, state = run(role, [self.state[name] for name in reads])
        self.state.update(zip(writes, state))
        self.frame_index, self.last_graph = self.frame_index + 1, role
        return outputs


class PipelineVideo:
    """A video pipeline's graphs run in PyTorch frame after frame, as ``VideoONNXPredictor``
    runs the exported ones (the reference of the parity check): call with one frame's
    ``(image, image_size)`` -> (boxes, scores, classes, masks); ``reset()`` between videos."""

    def __init__(self, pipeline, keyframe_interval: Optional[int] = None):
        graphs = video_graphs(pipeline)
        self.modules = {role: spec.module for role, spec in graphs.items()}
        interval = pipeline.keyframe_interval if keyframe_interval is None else keyframe_interval
        self.steps = VideoSteps({role: (spec.state_inputs, spec.state_outputs)
                                 for role, spec in graphs.items()},
                                check_keyframe_interval(interval, "PipelineVideo"))

    def reset(self):
        self.steps.reset()

    def __call__(self, image, image_size):
        def run(role, state):
            outputs = self.modules[role](image, image_size, *state)
            return outputs[:len(EXPORT_OUTPUTS)], outputs[len(EXPORT_OUTPUTS):]
        return self.steps.step(run)
