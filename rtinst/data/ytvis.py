"""Video datasets in the YouTube-VIS format (2019 / 2021; OVIS uses the same), registered in
``DatasetCatalog`` as one record per video.

A record:

    {"video_id": id in the JSON, "file_names": [absolute path of each frame], "height", "width",
     "length": number of frames,
     "annotations": [one per track: {"id": the JSON's annotation id, "category_id": contiguous
                     0-based, "iscrowd", "bbox_mode": BoxMode.XYWH_ABS,
                     "segmentations" / "bboxes" / "areas": one entry per frame, None where the
                     object is not visible}]}

so that Detectron2's dataset utilities (empty-record filter, class histogram) read the tracks as
they read an image's annotations. ``<name>_frames`` is registered beside every video dataset: its
frames as image records (COCO-style ``segmentation`` / ``bbox`` per object), for image methods to
train and be evaluated on.

``shapes_video_train`` / ``shapes_video_val`` / ``shapes_video_hard_val`` (crowded crossings,
shapes leaving and coming back, flickering shapes) are the embedded moving-shapes videos,
generated on first use into the cache dir (as the shapes images). The standard splits (``ytvis_2019_train`` ... ``ovis_val``) resolve under
``$DETECTRON2_DATASETS`` (default ``datasets/``), as Detectron2's COCO splits do; users' own
come from ``register_video_from_spec("name=annotations.json,frames_dir")``
(``--video-dataset`` of ``train_net.py``) or ``DATASETS.REGISTER_VIDEO``. Loading validates:
a frame file missing or a per-frame list of another length than the video is a ``DatasetError``
naming the file; tracks never visible are dropped with one warning.
"""
import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..errors import DatasetError
from . import synthetic_videos
from .datasets import (
    _listing,
    check_new_registration,
    dataset_thing_classes,
    get_cache_dir,
    parse_spec,
)

logger = logging.getLogger(__name__)

EVALUATOR_TYPE = "ytvis"
SHAPES_VIDEO_PARAMS = synthetic_videos.VideoShapesParams()
FRAMES_SUFFIX = "_frames"
PER_FRAME_KEYS = ("segmentations", "bboxes", "areas")
REQUIRED_KEYS = {
    "videos": ("id", "file_names", "height", "width"),
    "annotations": ("id", "video_id", "category_id"),
    "categories": ("id", "name"),
}

# name: (frames folder, annotation file), under $DETECTRON2_DATASETS
STANDARD_SPLITS = {
    "ytvis_2019_train": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train.json"),
    "ytvis_2019_val": ("ytvis_2019/valid/JPEGImages", "ytvis_2019/valid.json"),
    "ytvis_2021_train": ("ytvis_2021/train/JPEGImages", "ytvis_2021/train.json"),
    "ytvis_2021_val": ("ytvis_2021/valid/JPEGImages", "ytvis_2021/valid.json"),
    "ovis_train": ("ovis/train", "ovis/annotations_train.json"),
    "ovis_val": ("ovis/valid", "ovis/annotations_valid.json"),
}


def read_ytvis_json(json_file):
    """The parsed file, checked to have the keys loading relies on (``annotations`` may be
    absent: the server-evaluated splits have none); a ``DatasetError`` naming the file."""
    try:
        with open(json_file) as f:
            content = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {json_file} as JSON: {e}") from e
    if not isinstance(content, dict):
        raise DatasetError(f"{json_file} is not a YouTube-VIS file: no top-level object")
    content.setdefault("annotations", [])
    for section, keys in REQUIRED_KEYS.items():
        if not isinstance(content.get(section), list):
            raise DatasetError(
                f"{json_file} is not a YouTube-VIS file: missing key '{section}' (a list)"
            )
        for i, entry in enumerate(content[section]):
            missing = [k for k in keys if k not in entry] if isinstance(entry, dict) else keys
            if missing:
                raise DatasetError(
                    f"{json_file}: entry #{i} of '{section}' is missing key '{missing[0]}'"
                )
    return content


def category_mapping(categories):
    """{dataset category id: contiguous id} in the order of the ids, and the class names."""
    ordered = sorted(categories, key=lambda c: c["id"])
    return {c["id"]: i for i, c in enumerate(ordered)}, [c["name"] for c in ordered]


def _video_frames(video, json_file, frames_dir):
    """The frames' absolute paths; a ``DatasetError`` naming the first missing one."""
    paths = [os.path.join(frames_dir, name) for name in video["file_names"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetError(
            f"{json_file}: video {video['id']} has {len(missing)} of its {len(paths)} frames "
            f"missing under {frames_dir}: {_listing(missing)}"
        )
    length = video.get("length", len(paths))
    if length != len(paths):
        raise DatasetError(
            f"{json_file}: video {video['id']} says length {length} but lists "
            f"{len(paths)} file_names"
        )
    return paths


def _track(annotation, length, json_file, id_map):
    """The record entry of one annotation; a ``DatasetError`` for per-frame lists of another
    length than the video, None for a track that is never visible."""
    for key in PER_FRAME_KEYS:
        values = annotation.get(key)
        if values is not None and (not isinstance(values, list) or len(values) != length):
            found = len(values) if isinstance(values, list) else type(values).__name__
            raise DatasetError(
                f"{json_file}: annotation {annotation['id']} (video {annotation['video_id']}): "
                f"'{key}' has {found} entries, the video {length} frames"
            )
    segmentations = annotation.get("segmentations") or [None] * length
    bboxes = annotation.get("bboxes") or [None] * length
    if all(s is None for s in segmentations) and all(b is None for b in bboxes):
        return None
    if annotation["category_id"] not in id_map:
        raise DatasetError(
            f"{json_file}: annotation {annotation['id']} uses category_id "
            f"{annotation['category_id']}, which is not in 'categories'"
        )
    return {
        "id": annotation["id"],
        "category_id": id_map[annotation["category_id"]],
        "iscrowd": annotation.get("iscrowd", 0),
        "bbox_mode": BoxMode.XYWH_ABS,
        "segmentations": segmentations,
        "bboxes": bboxes,
        "areas": annotation.get("areas") or [None] * length,
    }


def load_ytvis_json(json_file, frames_dir, dataset_name=None):
    """The video records of a YouTube-VIS file (see the module docstring); with
    ``dataset_name``, its metadata gets the class names and id mapping."""
    content = read_ytvis_json(json_file)
    id_map, classes = category_mapping(content["categories"])
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(
            thing_classes=classes, thing_dataset_id_to_contiguous_id=id_map
        )
    tracks_of = {}
    for annotation in content["annotations"]:
        tracks_of.setdefault(annotation["video_id"], []).append(annotation)
    unknown = sorted(set(tracks_of) - {v["id"] for v in content["videos"]})
    if unknown:
        raise DatasetError(f"{json_file}: annotations refer to video id(s) {_listing(unknown)} "
                           "that are not in 'videos'")
    records, empty = [], []
    for video in content["videos"]:
        paths = _video_frames(video, json_file, frames_dir)
        tracks = []
        for annotation in tracks_of.get(video["id"], []):
            track = _track(annotation, len(paths), json_file, id_map)
            if track is None:
                empty.append(f"id {annotation['id']} (video {video['id']})")
            else:
                tracks.append(track)
        records.append({"video_id": video["id"], "file_names": paths, "height": video["height"],
                        "width": video["width"], "length": len(paths), "annotations": tracks})
    if empty:
        logger.warning("%s: dropping %d track(s) never visible: %s", json_file, len(empty),
                       _listing(empty))
    return records


def frame_records(video_records):
    """Every frame of every video as an image record, with the objects visible in it
    (``segmentation`` / ``bbox`` of that frame; ``track_id`` linking them across frames)."""
    records = []
    for video in video_records:
        for t, file_name in enumerate(video["file_names"]):
            annotations = [
                {"id": track["id"], "track_id": track["id"], "category_id": track["category_id"],
                 "iscrowd": track["iscrowd"], "bbox_mode": track["bbox_mode"],
                 "bbox": track["bboxes"][t], "segmentation": track["segmentations"][t]}
                for track in video["annotations"] if track["bboxes"][t] is not None
            ]
            records.append({"file_name": file_name, "height": video["height"],
                            "width": video["width"], "image_id": f"{video['video_id']}/{t}",
                            "video_id": video["video_id"], "frame_index": t,
                            "annotations": annotations})
    return records


def is_video_dataset(name):
    """Whether the registered dataset ``name`` holds video records (its evaluator_type)."""
    return MetadataCatalog.get(name).get("evaluator_type") == EVALUATOR_TYPE


def _point_metadata_at(name, json_file, frames_dir):
    """Sets ``name``'s ``json_file`` / ``image_root`` (which the evaluator reads) to the files
    being loaded: those of a generated dataset move with the cache dir."""
    meta = MetadataCatalog.get(name)
    if (meta.get("json_file"), meta.get("image_root")) == (json_file, frames_dir):
        return
    kept = {k: v for k, v in meta.as_dict().items()
            if k not in ("name", "json_file", "image_root", "thing_dataset_id_to_contiguous_id")}
    MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(json_file=json_file, image_root=frames_dir, **kept)


def _register(name, files, metadata):
    """Registers ``name`` (videos) and ``name_frames`` (their frames); ``files()`` gives
    ``(json_file, frames_dir)`` when loading."""

    def load_videos():
        json_file, frames_dir = files()
        _point_metadata_at(name, json_file, frames_dir)
        return load_ytvis_json(json_file, frames_dir, name)

    def read_classes():
        """The class names (and id mapping, set on the metadata) without loading the videos."""
        id_map, classes = category_mapping(read_ytvis_json(files()[0])["categories"])
        MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id = id_map
        return classes

    DatasetCatalog.register(name, load_videos)
    DatasetCatalog.register(name + FRAMES_SUFFIX, lambda: frame_records(DatasetCatalog.get(name)))
    MetadataCatalog.get(name).set(evaluator_type=EVALUATOR_TYPE, read_thing_classes=read_classes,
                                  **metadata)
    MetadataCatalog.get(name + FRAMES_SUFFIX).set(
        evaluator_type="coco", video_dataset=name,
        read_thing_classes=lambda: dataset_thing_classes(name),
        **{k: v for k, v in metadata.items() if k == "thing_colors"},
    )


def register_ytvis_dataset(name, json_file, frames_dir, **metadata):
    """Registers the YouTube-VIS file ``json_file`` with its frames under ``frames_dir`` as
    ``name`` (and ``name_frames``). The same files again do nothing; other files under a taken
    name, a missing file or folder, are a ``DatasetError``."""
    json_file, frames_dir = os.path.abspath(json_file), os.path.abspath(frames_dir)
    if check_new_registration(name, json_file, frames_dir, "video dataset", "frames"):
        return
    _register(name, lambda: (json_file, frames_dir),
              dict(json_file=json_file, image_root=frames_dir, **metadata))


def register_video_from_spec(spec):
    """Registers ``"name=annotations.json,frames_dir"``; returns the name."""
    name, json_file, frames_dir = parse_spec(spec, "video dataset", "FRAMES_DIR")
    register_ytvis_dataset(name, json_file, frames_dir)
    return name


def _standard_files(name):
    root = os.path.expanduser(os.environ.get("DETECTRON2_DATASETS", "datasets"))
    frames, annotations = STANDARD_SPLITS[name]
    json_file, frames_dir = os.path.join(root, annotations), os.path.join(root, frames)
    for path, what in ((json_file, "annotation file"), (frames_dir, "frames directory")):
        if not os.path.exists(path):
            raise DatasetError(f"dataset '{name}': {what} not found: {path} (set "
                               "$DETECTRON2_DATASETS to the folder holding "
                               f"{STANDARD_SPLITS[name][1].split('/')[0]}/)")
    return json_file, frames_dir


def register_standard_splits():
    """``ytvis_2019_*``, ``ytvis_2021_*`` and ``ovis_*``, resolved when first loaded."""
    for name in STANDARD_SPLITS:
        _register(name, lambda name=name: _standard_files(name), {})


def _shapes_video_files(split):
    root = synthetic_videos.generate_video_dataset(get_cache_dir(), SHAPES_VIDEO_PARAMS)
    return os.path.join(root, "annotations", f"{split}.json"), os.path.join(root, split)


def register_shapes_videos():
    """``shapes_video_train`` / ``shapes_video_val`` / ``shapes_video_hard_val``: the
    moving-shapes videos (``synthetic_videos.py``), generated into the cache dir on first
    load."""
    colors = MetadataCatalog.get("shapes_train").thing_colors
    for split in synthetic_videos.SPLITS:
        _register(f"shapes_video_{split}", lambda split=split: _shapes_video_files(split),
                  {"thing_colors": colors})
