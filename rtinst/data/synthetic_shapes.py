"""The "shapes" dataset: procedurally generated, deterministic instance segmentation in COCO format.

Every image is a cluttered background (gradient, low-frequency noise, unannotated lines and
scribbles) with 2-8 textured shapes of six classes, drawn in order so that later shapes occlude
earlier ones. A shape is only placed where every instance stays annotatable: at least
``MIN_VISIBLE_FRACTION`` of it visible, no hole in its visible part and no sliver too thin for a
polygon. So each visible shape pixel belongs to exactly one annotation, whose polygons, box and
area are those of its visible part.

Image ``i`` of a split is a pure function of (split seed, ``i``, ``ShapesParams``): a smaller
split is a prefix of a larger one with the same seed. ``generate_dataset`` writes

    <cache_dir>/datasets/shapes-v<VERSION>-<hash of the params>/
        annotations/{train,val}.json
        {train,val}/000000.jpg ...

atomically: into a temporary sibling folder that is renamed into place once complete.
"""
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

logger = logging.getLogger(__name__)

VERSION = 1  # bump whenever a change to this file changes the generated data
CLASSES = ("circle", "rectangle", "triangle", "star", "hexagon", "cross")
SPLITS = ("train", "val")

# aspect ratio (minor / major extent) a class may take; the others keep their own proportions
ASPECT_RANGES = {"rectangle": (0.3, 1.0), "triangle": (0.6, 1.5)}
RADIUS_RANGE = (0.05, 0.45)  # circumradius, relative to the image's shorter side
MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_AREA = 30  # pixels
MIN_POLYGON_AREA = 4.0  # pixels: smaller visible pieces are slivers
POLYGON_TOLERANCE = 0.25  # pixels: the most a simplified polygon deviates from the traced one
PLACEMENT_TRIES_PER_SHAPE = 10
MIN_CONTRAST = 60  # mean absolute difference (0-255) of a shape's colour and the background


@dataclass(frozen=True)
class ShapesParams:
    """Everything the generated data depends on (the dataset folder's name hashes it)."""

    train_images: int = 1000
    val_images: int = 200
    train_seed: int = 1
    val_seed: int = 2
    min_side: int = 192
    max_side: int = 320
    min_instances: int = 2
    max_instances: int = 8
    jpeg_quality: int = 90

    def seed_and_size(self, split):
        return getattr(self, f"{split}_seed"), getattr(self, f"{split}_images")


@dataclass
class Shape:
    """One placed shape: its class (index into ``CLASSES``) and full, unoccluded mask."""

    class_index: int
    mask: np.ndarray  # bool, H x W
    area: int
    center: tuple  # (x, y)


@dataclass
class Sample:
    """A rendered image (BGR) with its shapes, back to front, and their visible masks."""

    image: np.ndarray
    shapes: list
    visible_masks: list


def _unit_outline(name, aspect):
    """Polygon of class ``name`` centred at 0, its farthest vertex at distance 1."""
    if name == "star":
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2, 0.45, 1.0)
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
    elif name == "cross":
        a, w = 1.0, 0.3
        points = np.array(
            [(w, a), (w, w), (a, w), (a, -w), (w, -w), (w, -a),
             (-w, -a), (-w, -w), (-a, -w), (-a, w), (-w, w), (-w, a)]
        )  # fmt: skip
    else:
        vertices, phase = {"circle": (48, 0.0), "rectangle": (4, np.pi / 4),
                           "triangle": (3, np.pi / 2), "hexagon": (6, 0.0)}[name]  # fmt: skip
        angles = phase + np.arange(vertices) * 2 * np.pi / vertices
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = points * [1.0, aspect]
    return points / np.linalg.norm(points, axis=1).max()


def _random_shape(rng, height, width):
    class_index = int(rng.integers(len(CLASSES)))
    name = CLASSES[class_index]
    aspect = rng.uniform(*ASPECT_RANGES.get(name, (1.0, 1.0)))
    radius = min(height, width) * np.exp(rng.uniform(*np.log(RADIUS_RANGE)))
    angle = rng.uniform(0, 2 * np.pi)
    center = (rng.uniform(radius, width - radius), rng.uniform(radius, height - radius))
    mask = _polygon_mask(_placed_outline(_unit_outline(name, aspect), angle, radius, center),
                         height, width)
    return Shape(class_index, mask, int(np.count_nonzero(mask)), center)


def _placed_outline(outline, angle, radius, center):
    """A unit outline rotated by ``angle``, scaled by ``radius`` and moved to ``center``."""
    return outline @ _rotation(angle).T * radius + center


def _rotation(angle):
    """The 2 x 2 matrix rotating (x, y) points by ``angle`` (from x towards y)."""
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _polygon_mask(points, height, width):
    """Bool (height, width) mask of the polygon ``points`` (pixel coordinates, any of them may
    lie outside the image), rasterized at 1/16 px precision."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _bounding_box(mask):
    """XYWH box of a bool mask's pixels."""
    return cv2.boundingRect(mask.view(np.uint8))


def _visible_polygons(mask):
    """Outer contours of a (non-empty) bool mask as float polygons in COCO coordinates, and
    whether the mask has holes. Traced at twice the resolution, so that they run along pixel
    edges (0.25 px in) and rasterize back to exactly the mask; simplified within
    POLYGON_TOLERANCE."""
    x, y, w, h = _bounding_box(mask)
    crop = mask[y : y + h, x : x + w].view(np.uint8)
    doubled = cv2.resize(crop, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    is_outer = hierarchy[0, :, 3] < 0
    polygons = [
        (cv2.approxPolyDP(c, 2 * POLYGON_TOLERANCE, True).reshape(-1, 2) + 0.5) / 2 + (x, y)
        for c, outer in zip(contours, is_outer)
        if outer
    ]
    return polygons, not is_outer.all()


def _annotatable(visible, full_area):
    """Whether a visible mask can be annotated faithfully with polygons."""
    area = np.count_nonzero(visible)
    if area < max(MIN_VISIBLE_AREA, MIN_VISIBLE_FRACTION * full_area):
        return False
    polygons, has_holes = _visible_polygons(visible)
    return not has_holes and all(
        len(p) >= 3 and cv2.contourArea(p.astype(np.float32)) >= MIN_POLYGON_AREA for p in polygons
    )


def _place_shapes(rng, height, width, count):
    """Up to ``count`` shapes, back to front, and their visible masks."""
    shapes, visible = [], []
    for _ in range(PLACEMENT_TRIES_PER_SHAPE * count):
        if len(shapes) == count:
            break
        shape = _random_shape(rng, height, width)
        occluded = [v & ~shape.mask for v in visible]
        if _annotatable(shape.mask, shape.area) and all(
            _annotatable(new, s.area)
            for s, old, new in zip(shapes, visible, occluded)
            if np.count_nonzero(old) != np.count_nonzero(new)
        ):
            shapes.append(shape)
            visible = occluded + [shape.mask]
    return shapes, visible


def _random_colour(rng):
    return rng.integers(0, 256, 3).astype(np.float32)


def _grid(height, width):
    """Column and row coordinates, broadcastable to (height, width)."""
    xx = np.arange(width, dtype=np.float32)[None, :]
    return xx, np.arange(height, dtype=np.float32)[:, None]


def _ramp(angle, height, width):
    """Linear ramp from 0 to 1 across a (height, width) patch along direction ``angle``."""
    xx, yy = _grid(height, width)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    return (along - along.min()) / max(np.ptp(along), 1.0)


def _noise(rng, shape, amplitude):
    """Uniform noise in [-amplitude / 2, amplitude / 2) (cheaper to draw than Gaussian)."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * amplitude


def _background(rng, height, width):
    """A smooth colour gradient with low-frequency noise, crossed by unannotated clutter."""
    grid = (int(rng.integers(3, 9)), int(rng.integers(3, 9)))
    ramp = _ramp(rng.uniform(0, 2 * np.pi), *grid)[..., None]
    coarse = _random_colour(rng) * (1 - ramp) + _random_colour(rng) * ramp
    coarse = np.clip(coarse + rng.normal(0, 25, grid + (3,)), 0, 255).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 8))):  # clutter: straight lines and open scribbles
        points = rng.uniform(0, 1, (int(rng.integers(2, 6)), 2)) * [width, height]
        colour = tuple(int(c) for c in _random_colour(rng))
        cv2.polylines(image, [points.astype(np.int32)], False, colour, int(rng.integers(1, 4)))
    return image


def _texture(rng, base, height, width):
    """A solid, striped, checkered or noisy-gradient patch around colour ``base``."""
    other = _random_colour(rng)
    xx, yy = _grid(height, width)
    ramp = _ramp(rng.uniform(0, np.pi), height, width)
    kind = rng.integers(4)
    if kind == 0:
        weight = np.zeros((height, width), np.float32)
    elif kind == 1:
        weight = (ramp * max(height, width) // rng.uniform(2, 8)) % 2
    elif kind == 2:
        cell = rng.integers(3, 12)
        weight = (xx // cell + yy // cell) % 2
    else:
        weight = np.clip(ramp + _noise(rng, (height, width), 0.2), 0, 1)
    return base * (1 - weight[..., None]) + other * weight[..., None]


def _contrasting_colour(rng, background):
    while True:
        colour = _random_colour(rng)
        if np.abs(colour - background).mean() >= MIN_CONTRAST:
            return colour


def render_sample(seed, index, params):
    """Image ``index`` of the split with ``seed``."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))
    height, width = rng.integers(params.min_side, params.max_side + 1, 2)
    image = _background(rng, height, width)
    count = rng.integers(params.min_instances, params.max_instances + 1)
    shapes, visible = _place_shapes(rng, height, width, count)
    for shape in shapes:
        x, y, w, h = _bounding_box(shape.mask)
        cx, cy = shape.center
        base = _contrasting_colour(rng, image[int(cy), int(cx)].astype(np.float32))
        region = shape.mask[y : y + h, x : x + w]
        patch = _texture(rng, base, h, w)[region]
        image[y : y + h, x : x + w][region] = np.clip(patch, 0, 255).astype(np.uint8)
    image = cv2.add(image, _noise(rng, image.shape, rng.uniform(2, 12)), dtype=cv2.CV_8U)
    return Sample(image, shapes, visible)


def visible_annotation(visible):
    """COCO ``segmentation`` (polygons), ``bbox`` (XYWH) and ``area`` of a visible mask."""
    polygons, _ = _visible_polygons(visible)
    return {
        "segmentation": [p.ravel().tolist() for p in polygons],
        "bbox": list(_bounding_box(visible)),
        "area": int(np.count_nonzero(visible)),
    }


def _write_split(root, split, params):
    seed, size = params.seed_and_size(split)
    os.makedirs(os.path.join(root, split))
    images, annotations = [], []
    for index in tqdm(range(size), desc=f"shapes {split}", unit="img", leave=False):
        sample = render_sample(seed, index, params)
        file_name = f"{index:06d}.jpg"
        path = os.path.join(root, split, file_name)
        if not cv2.imwrite(path, sample.image, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]):
            raise OSError(f"could not write {path}")
        height, width = sample.image.shape[:2]
        images.append({"id": index + 1, "file_name": file_name, "width": width, "height": height})
        for shape, visible in zip(sample.shapes, sample.visible_masks):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": index + 1,
                 "category_id": shape.class_index + 1, "iscrowd": 0,
                 **visible_annotation(visible)}  # fmt: skip
            )
    coco = {
        "info": {"description": f"rtinst synthetic shapes v{VERSION}, {split}"},
        "images": images,
        "annotations": annotations,
        "categories": categories(),
    }
    _write_annotations(root, split, coco)


def categories():
    """The COCO ``categories``: ids 1.. in the order of ``CLASSES``."""
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]


def _write_annotations(root, split, content):
    """``content`` as ``<root>/annotations/<split>.json``, compact."""
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", f"{split}.json"), "w") as f:
        f.write(json.dumps(content, separators=(",", ":")))  # dumps: the C encoder, unlike dump


def _digest(content):
    """A short hash of the JSON-serializable ``content`` (e.g. the params as a dict)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


def dataset_dir(cache_dir, params=ShapesParams()):
    """Where the dataset for ``params`` lives (or will live) under ``cache_dir``."""
    digest = _digest(dataclasses.asdict(params))
    return os.path.join(cache_dir, "datasets", f"shapes-v{VERSION}-{digest}")


def generate_dataset(cache_dir, params=ShapesParams()):
    """The dataset folder for ``params``, generated first if absent; atomic and safe when several
    processes call it at once (``_generate_atomically``)."""

    def write(staging):
        for split in SPLITS:
            _write_split(staging, split, params)

    return _generate_atomically(dataset_dir(cache_dir, params), write, "the shapes dataset")


def _generate_atomically(target, write, description):
    """``target``, made first if absent by ``write(folder)``, which fills an empty folder.

    Safe when several processes call it at once: each writes into its own temporary folder
    and renames it into place; whoever comes second discards its copy. An interrupted run leaves
    no folder under the final name.
    """
    if os.path.isdir(target):
        return target
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
    os.mkdir(staging)  # unlike tempfile.mkdtemp's 0700, the mode the umask gives
    try:
        logger.info("Generating %s into %s ...", description, target)
        write(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isdir(target):
                raise
            logger.info("%s was generated by another process meanwhile; using it", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
