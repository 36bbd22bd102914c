"""Dataset registration: the generated ``shapes_train`` / ``shapes_val`` and users' COCO datasets.

``shapes_*`` are registered at import without generating anything; the first
``DatasetCatalog.get`` generates them (``ensure_generated``) under the cache dir:

1. ``cfg.DATASETS.CACHE_DIR``, which reaches the lazy loaders through ``set_cache_dir``
   (``rtinst.engine.setup`` calls it with the frozen config's value in every process);
2. else ``$RTINST_CACHE``;
3. else ``~/.cache/rtinst``.

Users' datasets go through ``register_coco_dataset`` (or ``register_from_spec`` /
``register_from_cfg`` for ``"name=annotations.json,image_dir"`` strings), which validates them:
missing images are skipped and degenerate annotations dropped, each with one summarising warning;
an unusable dataset raises ``DatasetError`` naming the file at fault.
"""
import functools
import json
import logging
import math
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils.colormap import colormap

from ..errors import DatasetError
from . import synthetic_shapes

logger = logging.getLogger(__name__)

SHAPES_PARAMS = synthetic_shapes.ShapesParams()
SHAPES_DATASETS = {f"shapes_{split}": split for split in synthetic_shapes.SPLITS}
BBOX_TOLERANCE = 1.0  # pixels a box may stick out of its image before it counts as outside
MAX_LISTED = 5  # problems named in a warning; the rest are counted

_cache_dir = None


# ---------------------------------------------------------------------------- cache dir


def set_cache_dir(path):
    """Makes ``path`` the cache dir of this process (``None``: back to $RTINST_CACHE or the
    default) and points the shapes datasets' metadata at it."""
    global _cache_dir
    _cache_dir = path
    _set_shapes_metadata()


def get_cache_dir(cfg=None):
    """``cfg.DATASETS.CACHE_DIR`` if set, else the dir given to ``set_cache_dir``, else
    ``$RTINST_CACHE``, else ``~/.cache/rtinst``."""
    path = (
        (cfg is not None and cfg.DATASETS.CACHE_DIR)
        or _cache_dir
        or os.environ.get("RTINST_CACHE")
        or "~/.cache/rtinst"
    )
    return os.path.abspath(os.path.expanduser(path))


# ---------------------------------------------------------------------------- shapes


def ensure_generated(cache_dir=None):
    """The shapes dataset folder under ``cache_dir`` (default: ``get_cache_dir()``), generated
    first if absent."""
    return synthetic_shapes.generate_dataset(cache_dir or get_cache_dir(), SHAPES_PARAMS)


def _shapes_files(name):
    root = synthetic_shapes.dataset_dir(get_cache_dir(), SHAPES_PARAMS)
    split = SHAPES_DATASETS[name]
    return os.path.join(root, "annotations", f"{split}.json"), os.path.join(root, split)


def _set_shapes_metadata():
    """(Re)sets the shapes datasets' metadata for the current cache dir."""
    colors = [tuple(int(c) for c in rgb) for rgb in colormap(rgb=True, maximum=255)]
    for name in SHAPES_DATASETS:
        json_file, image_root = _shapes_files(name)
        if MetadataCatalog.get(name).get("json_file") == json_file:
            continue
        MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(
            thing_classes=list(synthetic_shapes.CLASSES),
            thing_colors=colors[: len(synthetic_shapes.CLASSES)],
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
        )


def _load_shapes(name):
    ensure_generated()
    _set_shapes_metadata()  # in case $RTINST_CACHE changed since the registration
    return load_coco_json(*_shapes_files(name), dataset_name=name)


def _register_shapes():
    for name in SHAPES_DATASETS:
        DatasetCatalog.register(name, functools.partial(_load_shapes, name))
    _set_shapes_metadata()


# ---------------------------------------------------------------------------- users' COCO data


REQUIRED_KEYS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}


def _read_coco_json(json_file):
    """The parsed file, checked to have the keys ``load_coco_json`` and training rely on."""
    try:
        with open(json_file) as f:
            coco = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read {json_file} as JSON: {e}") from e
    if not isinstance(coco, dict):
        raise DatasetError(f"{json_file} is not a COCO annotation file: no top-level object")
    for section, keys in REQUIRED_KEYS.items():
        if not isinstance(coco.get(section), list):
            raise DatasetError(
                f"{json_file} is not a COCO annotation file: missing key '{section}' (a list)"
            )
        for i, entry in enumerate(coco[section]):
            missing = [k for k in keys if k not in entry] if isinstance(entry, dict) else keys
            if missing:
                raise DatasetError(
                    f"{json_file}: entry #{i} of '{section}' is missing key '{missing[0]}'"
                )
    unknown = {a["category_id"] for a in coco["annotations"]} - {
        c["id"] for c in coco["categories"]
    }
    if unknown:
        raise DatasetError(
            f"{json_file}: annotations use category_id(s) {_listing(sorted(unknown))} "
            "that are not in 'categories'"
        )
    return coco


def _listing(items):
    """'a, b, c' with at most MAX_LISTED items, then '... (N in all)'."""
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown}, ... ({len(items)} in all)"


def _annotation_problem(annotation, image):
    """Why ``annotation`` is unusable, or None."""
    bbox = annotation["bbox"]
    if not (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    ):
        return "malformed bbox"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "bbox width or height <= 0"
    if image is not None and (
        x < -BBOX_TOLERANCE
        or y < -BBOX_TOLERANCE
        or x + w > image["width"] + BBOX_TOLERANCE
        or y + h > image["height"] + BBOX_TOLERANCE
    ):
        return "bbox outside the image"
    segmentation = annotation.get("segmentation")
    if segmentation is None:
        return None  # a box-only annotation
    if isinstance(segmentation, dict):
        return _rle_problem(segmentation, image)
    # the polygon rule of load_coco_json: it drops the others
    if not isinstance(segmentation, list) or not any(
        isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation
    ):
        return "empty or invalid polygon"
    if not all(_finite_numbers(p) for p in segmentation if isinstance(p, list)):
        return "polygon coordinate not a finite number"
    return None


def _finite_numbers(values):
    return all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in values
    )


def _rle_problem(rle, image):
    """Why the RLE mask ``rle`` is unusable (pycocotools trusts its size and counts), or None."""
    if not {"counts", "size"} <= rle.keys():
        return "invalid RLE segmentation"
    size = rle["size"]
    if not (isinstance(size, list) and len(size) == 2 and _finite_numbers(size)):
        return "RLE size not [height, width]"
    if image is not None and list(size) != [image["height"], image["width"]]:
        return f"RLE size {size} is not the image's [{image['height']}, {image['width']}]"
    counts = rle["counts"]
    if isinstance(counts, list):
        if not (all(isinstance(c, int) and c >= 0 for c in counts)
                and sum(counts) == size[0] * size[1]):
            return "RLE counts do not cover the image"
    elif not isinstance(counts, str):
        return "RLE counts neither a list nor a string"
    return None


def _degenerate_annotation_ids(coco, json_file):
    """Ids of the unusable annotations, with one warning naming them."""
    images = {image["id"]: image for image in coco["images"]}
    problems = []
    for annotation in coco["annotations"]:
        problem = _annotation_problem(annotation, images.get(annotation["image_id"]))
        if problem:
            problems.append((annotation["id"], annotation["image_id"], problem))
    if problems:
        logger.warning(
            "%s: dropping %d degenerate annotation(s): %s",
            json_file,
            len(problems),
            _listing([f"id {a} (image {i}): {p}" for a, i, p in problems]),
        )
    return {annotation_id for annotation_id, _, _ in problems}


def _missing_image_ids(coco, json_file, image_root):
    """Ids of the images whose file is missing, with one warning naming them; a
    ``DatasetError`` if no image is left."""
    missing = [
        image
        for image in coco["images"]
        if not os.path.isfile(os.path.join(image_root, image["file_name"]))
    ]
    if len(missing) == len(coco["images"]):
        raise DatasetError(
            f"no image listed in {json_file} exists under {image_root}"
            + (f" (looked for {_listing([i['file_name'] for i in missing])})" if missing else "")
        )
    if missing:
        logger.warning(
            "%s: skipping %d of %d images, missing under %s: %s",
            json_file,
            len(missing),
            len(coco["images"]),
            image_root,
            _listing([image["file_name"] for image in missing]),
        )
    return {image["id"] for image in missing}


def _unusable_ids(json_file, image_root):
    """Ids of the images and annotations to leave out of ``json_file``'s dataset."""
    coco = _read_coco_json(json_file)
    missing_images = _missing_image_ids(coco, json_file, image_root)
    return missing_images, _degenerate_annotation_ids(coco, json_file)


def load_checked_coco_json(json_file, image_root, dataset_name):
    """``load_coco_json`` without the images whose file is missing and without degenerate
    annotations (each kind with one warning naming them); annotations keep their COCO ``id``.
    Raises ``DatasetError`` for an unusable dataset. (The file is parsed twice: once here to
    validate it, once by ``load_coco_json``.)"""
    missing_images, dropped_annotations = _unusable_ids(json_file, image_root)
    records = load_coco_json(json_file, image_root, dataset_name, extra_annotation_keys=["id"])
    records = [r for r in records if r["image_id"] not in missing_images]
    for record in records:
        record["annotations"] = [
            a for a in record["annotations"] if a["id"] not in dropped_annotations
        ]
    return records


def check_new_registration(name, json_file, folder, kind="dataset", folder_kind="image"):
    """Whether ``name`` is already registered with these files (absolute paths), so that
    registering it again does nothing; a ``DatasetError`` when it is registered with other
    files, or ``json_file`` or ``folder`` is missing (``kind`` / ``folder_kind`` name them in the
    messages: "dataset" / "image", "video dataset" / "frames")."""
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        registered = tuple(
            os.path.abspath(p) if p else p for p in (meta.get("json_file"), meta.get("image_root"))
        )
        if registered == (json_file, folder):
            return True
        plural = "images" if folder_kind == "image" else folder_kind
        raise DatasetError(
            f"dataset '{name}' is already registered with annotations {registered[0]} and "
            f"{plural} {registered[1]}; cannot register it again with {json_file} and {folder}"
        )
    if not os.path.isfile(json_file):
        raise DatasetError(f"{kind} '{name}': annotation file not found: {json_file}")
    if not os.path.isdir(folder):
        raise DatasetError(f"{kind} '{name}': {folder_kind} directory not found: {folder}")
    return False


def register_coco_dataset(name, json_file, image_root):
    """Registers the COCO-format dataset ``json_file`` + ``image_root`` as ``name``.

    Registering a name again with the same files does nothing; with other files it is a
    ``DatasetError``, as are a missing ``json_file`` or ``image_root``.
    """
    json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
    if check_new_registration(name, json_file, image_root):
        return
    DatasetCatalog.register(name, lambda: load_checked_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")


def dataset_thing_classes(name):
    """The class names of the registered dataset ``name`` (``thing_classes`` of its metadata),
    without loading its records: through its metadata's ``read_thing_classes`` when it has one
    (video datasets), else, for a COCO-format dataset registered here, from the
    'categories' of its annotation file (in ``load_coco_json``'s order: sorted by id) and set on
    its metadata. ``None`` when the dataset declares none."""
    meta = MetadataCatalog.get(name)
    if meta.get("thing_classes") is None and meta.get("read_thing_classes"):
        meta.thing_classes = meta.read_thing_classes()  # e.g. a video dataset's (ytvis.py)
    elif meta.get("thing_classes") is None and meta.get("json_file"):
        categories = _read_coco_json(meta.json_file)["categories"]
        meta.thing_classes = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    return meta.get("thing_classes")


def parse_spec(spec, kind="dataset", folder="IMAGE_DIR"):
    """``(name, json_file, folder)`` of ``"name=annotations.json,folder"``; a ``DatasetError``
    for a malformed one."""
    name, _, files = spec.partition("=")
    json_file, _, root = files.rpartition(",")
    name, json_file, root = name.strip(), json_file.strip(), root.strip()
    if not (name and json_file and root):
        raise DatasetError(
            f"malformed {kind} spec {spec!r}: expected NAME=ANNOTATIONS.json,{folder}"
        )
    return name, json_file, root


def register_from_spec(spec):
    """Registers ``"name=annotations.json,image_dir"``; returns the name."""
    name, json_file, image_root = parse_spec(spec)
    register_coco_dataset(name, json_file, image_root)
    return name


def register_from_cfg(cfg):
    """Registers every spec in ``cfg.DATASETS.REGISTER``; returns their names."""
    return [register_from_spec(spec) for spec in cfg.DATASETS.REGISTER]


_register_shapes()
