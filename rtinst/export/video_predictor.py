"""``VideoONNXPredictor``: ``ONNXPredictor`` over the frames of a video, for the graphs of a
video export (``export_onnx`` of a pipeline with ``graphs()``): the keyframe graph on keyframes
(the first frame after ``reset()``, then per the export's ``keyframe_interval``), the frame graph
on the others, each fed the state the previous frames left. The image is prepared and the
outputs mapped back exactly as ``ONNXPredictor`` does (its ``prepare`` and ``predict``): only
``run`` differs.

A single-graph export runs as the image model it is: every frame on its own, no state.
"""
from pathlib import Path
from typing import Optional

from rtinst.engine.predictor import DEFAULT_MAX_OUTPUT_PIXELS

from .graphs import VideoSteps, check_keyframe_interval, state_input_name, state_output_name
from .onnx_predictor import ONNXPredictor, open_session
from .pipeline import EXPORT_OUTPUTS, INPUT_NAMES
from .video_metadata import read_video_metadata

__all__ = ["VideoONNXPredictor"]

# the metadata every file of one video export shares
_SHARED_KEYS = ("input_format", "input_size", "pad_value", "picture_fit", "video")


class VideoONNXPredictor(ONNXPredictor):
    """Call with a video's frames in order (BGR uint8, as ``ONNXPredictor``): ``{"instances":
    Instances}`` per frame; ``reset()`` before another video. ``last_graph`` says which graph
    the last frame ran ("keyframe" or "frame"), ``paths`` the file of each graph."""

    video_mode = True

    def __init__(self, path, num_threads: int = 2, max_output_pixels=DEFAULT_MAX_OUTPUT_PIXELS,
                 keyframe_interval: Optional[int] = None):
        """
        Args:
            path: any one file of a video export (the others are found next to it), or a
                single-graph export.
            num_threads, max_output_pixels: as ``ONNXPredictor``'s.
            keyframe_interval: a keyframe every this many frames instead of the export's
                (0: only the first frame after a reset; 1: every frame).
        """
        super().__init__(path, num_threads, max_output_pixels)
        path = Path(path)
        props = self.session.get_modelmeta().custom_metadata_map
        if "video" not in props:  # an image model
            self.paths, self.sessions = {"keyframe": path}, {"keyframe": self.session}
            graphs, interval = {"keyframe": ((), ())}, 1
            if keyframe_interval not in (None, 1):
                raise ValueError(f"keyframe_interval={keyframe_interval!r}: {path} is a "
                                 "single-graph export, every frame is a keyframe")
        else:
            metadata = read_video_metadata(props, path)
            self.paths = {role: path.with_name(name) for role, name in metadata.files.items()}
            self.sessions = {role: self.session if file.name == path.name
                             else self._open_graph(file, role, props, metadata, num_threads)
                             for role, file in self.paths.items()}
            graphs, interval = metadata.graphs, metadata.keyframe_interval
        if keyframe_interval is not None:
            interval = check_keyframe_interval(keyframe_interval, "VideoONNXPredictor")
        self.steps = VideoSteps(graphs, interval)

    @staticmethod
    def _open_graph(file, role, props, metadata, num_threads):
        """The session of ``role``'s ``file``, checked to belong to the same export."""
        session, file_props = open_session(file, num_threads)
        for key in _SHARED_KEYS:
            if file_props.get(key) != props.get(key):
                raise ValueError(f"{file}: its metadata '{key}' differs from the other graph's: "
                                 "the files are not of one export")
        reads, writes = metadata.graphs[role]
        expected = ([*INPUT_NAMES, *map(state_input_name, reads)],
                    [*EXPORT_OUTPUTS, *map(state_output_name, writes)])
        found = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        if file_props.get("graph") != role or found != expected:
            raise ValueError(f"{file}: not the {role} graph its metadata describe (graph "
                             f"{file_props.get('graph')!r}, inputs/outputs {found}; expected "
                             f"{expected})")
        return session

    @property
    def last_graph(self) -> Optional[str]:
        return self.steps.last_graph

    def reset(self):
        """Before another video: no state, the next frame is a keyframe."""
        self.steps.reset()

    def run(self, image, image_size=None):
        """One frame's raw outputs (boxes, scores, classes, masks), as ``ONNXPredictor.run``,
        from the graph its place in the video calls for, fed the state carried so far."""
        feeds = self.feeds(image, image_size)

        def run_graph(role, state):
            reads, writes = self.steps.graphs[role]
            outputs = self.sessions[role].run(
                [*EXPORT_OUTPUTS, *map(state_output_name, writes)],
                {**feeds, **dict(zip(map(state_input_name, reads), state))})
            return outputs[:len(EXPORT_OUTPUTS)], outputs[len(EXPORT_OUTPUTS):]
        return self.steps.step(run_graph)
