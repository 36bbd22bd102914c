"""The metadata that makes the files of a video export one set: every graph's file carries,
besides the single-graph keys (input_format, input_size, pad_value, picture_fit), ``graph`` (its
role) and ``video``, a JSON object::

    {"keyframe_interval": 5,
     "graphs": {"keyframe": {"file": "m.keyframe.onnx", "state_inputs": [],
                             "state_outputs": ["kernels"]},
                "frame": {"file": "m.frame.onnx", "state_inputs": ["kernels"],
                          "state_outputs": []}},
     "state": {"kernels": {"shape": [10, 64], "dtype": "float32"}}}

so that any one of the files is enough to load the set (the others are found next to it).
Reading it parses JSON only and checks every key, naming the file and the key at fault.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

from .graphs import check_keyframe_interval, check_roles

__all__ = ["VideoMetadata", "read_video_metadata"]


@dataclass(frozen=True)
class VideoMetadata:
    keyframe_interval: int
    files: Dict[str, str]  # {role: file name, in the same folder}
    graphs: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]]  # {role: (state in, state out)}
    state: Dict[str, dict]  # {name: {"shape": [...], "dtype": "float32"}}

    def to_json(self) -> str:
        graphs = {role: {"file": self.files[role], "state_inputs": list(reads),
                         "state_outputs": list(writes)}
                  for role, (reads, writes) in self.graphs.items()}
        return json.dumps({"keyframe_interval": self.keyframe_interval, "graphs": graphs,
                           "state": self.state})


def _names(value, key):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key} must be a list of names, got {value!r}")
    return tuple(value)


def _file_name(value, key):
    if not isinstance(value, str) or not value.endswith(".onnx") or Path(value).name != value:
        raise ValueError(f"{key} must be the name of an .onnx file in the same folder, got "
                         f"{value!r}")
    return value


def _state(value):
    if not isinstance(value, dict):
        raise ValueError(f"state must be an object, got {value!r}")
    for name, entry in value.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape)
                or not isinstance(entry.get("dtype"), str)):
            raise ValueError(f"state.{name} must be {{\"shape\": [ints], \"dtype\": str}}, got "
                             f"{entry!r}")
    return value


def _get(obj, key, where):
    if not isinstance(obj, dict):
        raise ValueError(f"{where or 'the value'} must be a JSON object, got {obj!r}")
    if key not in obj:
        raise ValueError(f"no key {where + '.' if where else ''}{key}")
    return obj[key]


def read_video_metadata(props: dict, path) -> VideoMetadata:
    """The ``video`` metadata of the ONNX file ``path`` (its metadata_props ``props``); a
    ``ValueError`` naming the file and the key at fault."""
    try:
        video = json.loads(props["video"])
        graphs = _get(video, "graphs", "")
        roles, files = {}, {}
        for role in graphs:
            entry = _get(graphs, role, "graphs")
            roles[role] = tuple(_names(_get(entry, key, f"graphs.{role}"),
                                       f"graphs.{role}.{key}")
                                for key in ("state_inputs", "state_outputs"))
            files[role] = _file_name(_get(entry, "file", f"graphs.{role}"), f"graphs.{role}.file")
        check_roles(roles, "graphs")
        metadata = VideoMetadata(
            check_keyframe_interval(_get(video, "keyframe_interval", ""), ""),
            files, roles, _state(_get(video, "state", "")))
    except ValueError as e:  # json.JSONDecodeError included
        raise ValueError(f"{path}: metadata 'video': {e}") from None
    unknown = sorted({n for reads, writes in roles.values() for n in reads + writes}
                     - set(metadata.state))
    if unknown:
        raise ValueError(f"{path}: metadata 'video': state {unknown} has no entry in 'state'")
    if props.get("graph") not in files:
        raise ValueError(f"{path}: metadata 'graph' must be one of {list(files)}, got "
                         f"{props.get('graph')!r}")
    return metadata
