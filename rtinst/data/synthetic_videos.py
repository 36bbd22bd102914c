"""The "moving shapes" videos: procedurally generated, deterministic video instance segmentation
in YouTube-VIS format, the video counterpart of the shapes images (``synthetic_shapes.py``).

Frames are rendered in the images' style, with their functions: the same six classes of
textured shapes over the same cluttered backgrounds, colours contrasting with the background,
sensor noise. Per video:

* camera motion: the frame is a window onto a larger background, panning at constant velocity
  with a slow drift;
* 2-6 shapes, each on its own smooth trajectory (in frame coordinates: a constant velocity with a
  slight curvature), rotating and growing or shrinking slowly. Some enter the frame from outside
  after the start, some leave it before the end (unannotated while out of view), the others move
  about inside;
* depth: the shapes keep their order back to front, so later ones occlude earlier ones; in most
  videos at least one pair is made to cross: both pass the same point at the same time, coming
  from opposite sides, one in front of the other, which may hide the one behind for a few frames;
* lighting: brightness, contrast and colour gains ramp smoothly over the video, and each frame has
  its own sensor noise.

A shape moves a fraction of its size per frame, so that matching masks by IoU to the previous
frame can follow it; a shape is only kept where every track stays trackable: visible in at least
``MIN_TRACK_FRAMES`` frames and never hidden for more than ``MAX_HIDDEN_FRAMES`` frames in a row
between two frames it is visible in. An object counts as visible in a frame where at least
``MIN_VISIBLE_AREA`` pixels and ``MIN_VISIBLE_FRACTION`` of its (unclipped) area show; there its
visible mask is annotated, elsewhere the annotation is null. Visible masks of a frame are disjoint.

The ``hard_val`` split stresses what a tracker must get right: more shapes (``HARD_OBJECTS``),
up to three crossing pairs per video, shapes that leave the frame and come back (role "return":
a parabolic path turning just outside a border), and shapes that *flicker*: painted faint
(``FLICKER_OPACITY`` over the background) in some frames, so that a detector's score for them
dips and recovers (they stay annotated there).

Video ``i`` of a split is a pure function of (split seed, ``i``, ``VideoShapesParams``): a smaller
split is a prefix of a larger one with the same seed. ``generate_video_dataset`` writes

    <cache_dir>/datasets/shapes-video-v<VERSION>-<hash of the params>/
        annotations/{train,val,hard_val}.json      YouTube-VIS 2019 / 2021 format, RLE masks
        {train,val,hard_val}/000000/00000.jpg ...  one folder of frames per video

atomically, as ``synthetic_shapes.generate_dataset`` does. The hash covers the params and the
images' ``synthetic_shapes.VERSION`` (the rendering functions shared with them).
"""
import dataclasses
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm
from pycocotools import mask as mask_util

from . import synthetic_shapes
from .synthetic_shapes import (
    ASPECT_RANGES,
    CLASSES,
    MIN_VISIBLE_AREA,
    _background,
    _bounding_box,
    _contrasting_colour,
    _digest,
    _generate_atomically,
    _noise,
    _placed_outline,
    _polygon_mask,
    _rotation,
    _texture,
    _unit_outline,
    _write_annotations,
    categories,
)

__all__ = ["CLASSES", "FPS", "SPLITS", "VERSION", "VideoObject", "VideoSample", "VideoShapesParams",
           "generate_video_dataset", "render_video", "track_annotation", "video_dataset_dir"]

VERSION = 1  # bump whenever a change to this file changes the generated data
SPLITS = ("train", "val", "hard_val")
FPS = 10  # the rate the frames are meant to be played at

RADIUS_RANGE = (0.06, 0.28)  # circumradius (log-uniform), relative to the frame's shorter side
MAX_FRONT_RADIUS = 0.36  # the same, the most the front shape of a crossing may be enlarged to
SCALE_CHANGE = 0.4  # the most the log of a shape's radius changes over a video
MAX_SPIN = 0.06  # radians per frame
SPEED_RANGE = (0.04, 0.16)  # displacement per frame, relative to the shape's radius
CROSSING_SPEED_RANGE = (0.08, 0.2)  # the same for the shapes of a crossing
MAX_TURN = 0.6  # radians: the most a path's direction turns over a video (its curvature)
CAMERA_SPEED_RANGE = (0.3, 2.0)  # pixels per frame
MAX_CAMERA_DRIFT = 0.03  # pixels per frame^2
CROSSING_PROBABILITY = 0.9  # of a video with two shapes or more having a crossing pair
SECOND_CROSSING_PROBABILITY = 0.4  # of one with four or more having a second one
OCCLUDING_CROSSING_PROBABILITY = 0.5  # of a crossing's front shape being much the larger
FRONT_SCALE_RANGE = (1.5, 2.3)  # its radius relative to the back shape's then
ROLES = ("free", "enter", "leave")  # of the shapes outside crossings, drawn alike
MIN_VISIBLE_FRACTION = 0.05
MIN_TRACK_FRAMES = 2
MAX_HIDDEN_FRAMES = 3
PLACEMENT_TRIES = 12  # per shape or crossing pair
BRIGHTNESS_RANGE = (-25.0, 25.0)  # added to 0-255 values, at the start and at the end
CONTRAST_RANGE = (0.8, 1.2)  # factor about mid-grey
GAIN_RANGE = (0.9, 1.1)  # per colour channel
NOISE_RANGE = (2, 12)  # amplitude of the per-frame sensor noise, as the images have
HARD_OBJECTS = (4, 7)  # shapes per video of the hard split
HARD_CROSSING_PAIRS = (1, 3)
HARD_ROLES = ("free", "enter", "leave", "return")
RETURN_HIDDEN_FRAMES = (1, 3)  # how long a returning shape's centre is out of the frame
FLICKER_PROBABILITY = 0.4  # of a shape of the hard split flickering
FLICKER_FRAME_RATE = 0.25  # of its frames being faint
FLICKER_OPACITY = (0.25, 0.45)


@dataclass(frozen=True)
class VideoShapesParams:
    """Everything the generated data depends on (the dataset folder's name hashes it)."""

    train_videos: int = 48
    val_videos: int = 12
    hard_val_videos: int = 8
    frames: int = 24  # per video, played at FPS
    train_seed: int = 11
    val_seed: int = 12
    hard_val_seed: int = 13
    min_side: int = 192  # frame size, each side drawn in [min_side, max_side] per video
    max_side: int = 320
    min_objects: int = 2
    max_objects: int = 6
    jpeg_quality: int = 90

    def seed_and_size(self, split):
        return getattr(self, f"{split}_seed"), getattr(self, f"{split}_videos")


@dataclass(frozen=True)
class _Motion:
    """A shape and its trajectory: at frame ``t``, with ``tau = t - t_ref``, centre
    ``position + velocity tau + acceleration tau^2 / 2``, radius ``radius exp(growth tau)``, angle
    ``angle + spin tau``."""

    class_index: int
    aspect: float
    radius: float
    angle: float
    spin: float
    growth: float
    t_ref: float
    position: tuple
    velocity: tuple
    acceleration: tuple

    def states(self, frames):
        tau = np.arange(frames, dtype=np.float64)[:, None] - self.t_ref
        centers = (np.asarray(self.position) + np.asarray(self.velocity) * tau
                   + 0.5 * np.asarray(self.acceleration) * tau**2)
        tau = tau[:, 0]
        return centers, self.radius * np.exp(self.growth * tau), self.angle + self.spin * tau


@dataclass
class VideoObject:
    """One shape of a video: its class (index into ``CLASSES``), its role ("free", "enter",
    "leave", "return" or "cross"), its state per frame (``centers`` (T, 2) as (x, y), ``radii``
    (T,): circumradius, ``angles`` (T,)), its full, unoccluded masks per frame (bool H x W,
    clipped to the frame), its visible masks: the annotated ones, None where it is not visible,
    and its opacity per frame (1 but where it flickers)."""

    class_index: int
    role: str
    centers: np.ndarray
    radii: np.ndarray
    angles: np.ndarray
    full_masks: list
    masks: list
    opacity: np.ndarray = None

    @property
    def visible(self):
        """(T,) bool: the frames it is annotated in."""
        return np.array([m is not None for m in self.masks])


@dataclass
class VideoSample:
    """A rendered video: its frames (BGR uint8, H x W x 3), its objects back to front, the
    camera's offset per frame ((T, 2) int: the frame's top left corner in the background),
    and its crossings: (index of the back object, index of the front one, time they meet)."""

    frames: list
    objects: list
    camera: np.ndarray
    crossings: list


def _rng(seed, index):
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))


def _unit_vector(angle):
    return np.array([np.cos(angle), np.sin(angle)])


def _random_look(rng, height, width, frames):
    """Class, aspect, radius, angle, spin and growth of a new shape."""
    class_index = int(rng.integers(len(CLASSES)))
    return {
        "class_index": class_index,
        "aspect": float(rng.uniform(*ASPECT_RANGES.get(CLASSES[class_index], (1.0, 1.0)))),
        "radius": float(min(height, width) * np.exp(rng.uniform(*np.log(RADIUS_RANGE)))),
        "angle": float(rng.uniform(0, 2 * np.pi)),
        "spin": float(rng.uniform(-MAX_SPIN, MAX_SPIN)),
        "growth": float(rng.uniform(-SCALE_CHANGE, SCALE_CHANGE) / max(frames - 1, 1)),
    }


def _path(rng, speed, direction, frames):
    """Velocity and acceleration: ``speed`` along ``direction``, turning by up to ``MAX_TURN``
    over the video."""
    velocity = speed * _unit_vector(direction)
    turn = rng.uniform(-MAX_TURN, MAX_TURN) / max(frames - 1, 1)
    acceleration = turn * speed * _unit_vector(direction + np.pi / 2)
    return {"velocity": tuple(velocity), "acceleration": tuple(acceleration)}


def _free_motion(rng, height, width, frames):
    """A shape moving about inside the frame."""
    look = _random_look(rng, height, width, frames)
    r = min(look["radius"], height / 2, width / 2)
    position = (rng.uniform(r, width - r), rng.uniform(r, height - r))
    speed = look["radius"] * rng.uniform(*SPEED_RANGE)
    path = _path(rng, speed, rng.uniform(0, 2 * np.pi), frames)
    return _Motion(**look, t_ref=float(rng.uniform(0, frames - 1)), position=position, **path)


def _border_motion(rng, height, width, frames, entering):
    """A shape just outside the frame at a time in the first (``entering``: moving in) or last
    (else: moving out) 40% of the video."""
    look = _random_look(rng, height, width, frames)
    r = look["radius"]
    span = max(1, round(0.4 * (frames - 1)))
    side = int(rng.integers(4))  # left, top, right, bottom
    outward = side * np.pi / 2 + np.pi  # direction out of the frame through that side
    along = rng.uniform(0.15, 0.85)
    position = [(-r - 1, along * height), (along * width, -r - 1),
                (width + r + 1, along * height), (along * width, height + r + 1)][side]
    deviation = rng.uniform(-np.pi / 4, np.pi / 4)
    if entering:
        t_ref = int(rng.integers(1, span + 1))
        direction, travel_time = outward + np.pi + deviation, frames - 1 - t_ref
    else:
        t_ref = frames - 1 - int(rng.integers(1, span + 1))
        direction, travel_time = outward + deviation, t_ref
    # fast enough to have its centre in the frame at the end (start), within reason
    needed = (r + 1) / max(travel_time, 1) / np.cos(deviation)
    speed = max(r * rng.uniform(*SPEED_RANGE), min(needed, r * CROSSING_SPEED_RANGE[1]))
    path = _path(rng, speed, direction, frames)
    return _Motion(**look, t_ref=float(max(t_ref, 0)), position=position, **path)


def _returning_motion(rng, height, width, frames):
    """A shape that leaves the frame through a border and comes back: a parabolic path whose
    turning point, at a time in the middle half of the video, is just outside that border."""
    look = _random_look(rng, height, width, frames)
    r = look["radius"]
    side = int(rng.integers(4))  # left, top, right, bottom
    inward = _unit_vector(side * np.pi / 2)  # into the frame through that side
    along = rng.uniform(0.2, 0.8)
    position = [(-r - 1, along * height), (along * width, -r - 1),
                (width + r + 1, along * height), (along * width, height + r + 1)][side]
    hidden = rng.uniform(*RETURN_HIDDEN_FRAMES)
    # back in view (the centre 0.5 r inside the border) `hidden` frames from the turn
    acceleration = 2 * (1.5 * r + 1) / hidden**2 * inward
    tangential = r * rng.uniform(*SPEED_RANGE) * _unit_vector(side * np.pi / 2 + np.pi / 2)
    t_ref = float(rng.uniform(0.25, 0.75) * (frames - 1))
    return _Motion(**look, t_ref=t_ref, position=position, velocity=tuple(tangential),
                   acceleration=tuple(acceleration))


def _crossing_motions(rng, height, width, frames):
    """Two shapes meeting at one point at one time, coming from roughly opposite sides; the
    second (in front) often much the larger. Returns them and the time they meet."""
    meet = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height)
    t_meet = float(rng.uniform(0.35, 0.65) * (frames - 1))
    back = _random_look(rng, height, width, frames)
    front = _random_look(rng, height, width, frames)
    if rng.random() < OCCLUDING_CROSSING_PROBABILITY:
        front["radius"] = min(back["radius"] * rng.uniform(*FRONT_SCALE_RANGE),
                              MAX_FRONT_RADIUS * min(height, width))
    direction = rng.uniform(0, 2 * np.pi)
    directions = (direction, direction + np.pi + rng.uniform(-np.pi / 3, np.pi / 3))
    motions = []
    for look, heading in zip((back, front), directions):
        path = _path(rng, look["radius"] * rng.uniform(*CROSSING_SPEED_RANGE), heading, frames)
        motions.append(_Motion(**look, t_ref=t_meet, position=meet, **path))
    return motions, t_meet


@dataclass
class _Planned:
    motion: _Motion
    role: str
    full: np.ndarray  # (T, H, W) bool
    min_area: np.ndarray  # (T,): the least visible area that counts as visible


def _plan(motion, role, height, width, frames):
    centers, radii, angles = motion.states(frames)
    outline = _unit_outline(CLASSES[motion.class_index], motion.aspect)
    full = np.stack([
        _polygon_mask(_placed_outline(outline, a, r, c), height, width)
        for c, r, a in zip(centers, radii, angles)
    ])
    unit_area = 0.5 * abs(np.dot(outline[:, 0], np.roll(outline[:, 1], 1))
                          - np.dot(outline[:, 1], np.roll(outline[:, 0], 1)))
    min_area = np.maximum(MIN_VISIBLE_AREA, MIN_VISIBLE_FRACTION * unit_area * radii**2)
    return _Planned(motion, role, full, min_area)


def _visibility(planned):
    """Per planned object, back to front: its visible masks (T, H, W) and the (T,) frames where
    it counts as visible."""
    covered = np.zeros_like(planned[0].full)
    result = [None] * len(planned)
    for i in reversed(range(len(planned))):
        visible = planned[i].full & ~covered
        covered |= planned[i].full
        result[i] = (visible, np.count_nonzero(visible, axis=(1, 2)) >= planned[i].min_area)
    return result


def _trackable(seen):
    """Whether a (T,) visibility pattern makes a trackable track."""
    frames = np.flatnonzero(seen)
    return (len(frames) >= min(MIN_TRACK_FRAMES, len(seen))
            and (len(frames) < 2 or np.diff(frames).max() - 1 <= MAX_HIDDEN_FRAMES))


def _acceptable(visibility, crossings):
    if not all(_trackable(seen) for _, seen in visibility):
        return False
    for back, front, t_meet in crossings:  # both seen before they meet and after
        both = visibility[back][1] & visibility[front][1]
        times = np.flatnonzero(both)
        if not (len(times) and times.min() < t_meet < times.max()):
            return False
    return True


def _place_objects(rng, height, width, frames, count, hard=False):
    """Up to ``count`` planned objects, back to front, their visibility and their crossings
    (``hard``: the hard split's crossings and roles)."""
    pairs, roles = 0, ROLES
    if hard:
        pairs, roles = min(count // 2, int(rng.integers(*HARD_CROSSING_PAIRS, endpoint=True))), \
            HARD_ROLES
    elif count >= 2 and rng.random() < CROSSING_PROBABILITY:
        pairs = 1 + int(count >= 4 and rng.random() < SECOND_CROSSING_PROBABILITY)
    singles = rng.integers(len(roles), size=count - 2 * pairs)
    groups = ["cross"] * pairs + [roles[i] for i in singles]
    planned, crossings, visibility = [], [], None
    for kind in (groups[i] for i in rng.permutation(len(groups))):
        for _ in range(PLACEMENT_TRIES):
            if kind == "cross":
                motions, t_meet = _crossing_motions(rng, height, width, frames)
                new = [_plan(m, kind, height, width, frames) for m in motions]
                new_crossings = [(len(planned), len(planned) + 1, t_meet)]
            else:
                if kind == "free":
                    motion = _free_motion(rng, height, width, frames)
                elif kind == "return":
                    motion = _returning_motion(rng, height, width, frames)
                else:
                    motion = _border_motion(rng, height, width, frames, kind == "enter")
                new, new_crossings = [_plan(motion, kind, height, width, frames)], []
            trial = _visibility(planned + new)
            if _acceptable(trial, crossings + new_crossings):
                planned, crossings, visibility = planned + new, crossings + new_crossings, trial
                break
    return planned, visibility or [], crossings


def _camera(rng, frames):
    """The frame's top-left corner in the background per frame ((T, 2) int, from 0)."""
    t = np.arange(frames, dtype=np.float64)[:, None]
    velocity = rng.uniform(*CAMERA_SPEED_RANGE) * _unit_vector(rng.uniform(0, 2 * np.pi))
    drift = rng.uniform(0, MAX_CAMERA_DRIFT) * _unit_vector(rng.uniform(0, 2 * np.pi))
    offsets = velocity * t + 0.5 * drift * t**2
    return np.round(offsets - offsets.min(axis=0)).astype(int)


def _lighting(rng, frames):
    """Per frame (T,) contrast, (T,) brightness and (T, 3) colour gains: smooth ramps from a
    start to an end value each."""
    ramp = ((1 - np.cos(np.pi * np.arange(frames) / max(frames - 1, 1))) / 2)[:, None]
    ends = [rng.uniform(*CONTRAST_RANGE, (2, 1)), rng.uniform(*BRIGHTNESS_RANGE, (2, 1)),
            rng.uniform(*GAIN_RANGE, (2, 3))]
    contrast, brightness, gain = ((1 - ramp) * start + ramp * end for start, end in ends)
    return contrast[:, 0], brightness[:, 0], gain.astype(np.float32)


def _shape_texture(rng, background, radii, centers, camera, seen):
    """A square texture patch in the shape's own coordinates (its centre the shape's, half its
    side the largest radius), around a colour contrasting with the background along its path."""
    world = np.round(centers[seen] + camera[seen]).astype(int)
    world = np.clip(world, 0, [background.shape[1] - 1, background.shape[0] - 1])
    under = background[world[:, 1], world[:, 0]].astype(np.float32).mean(axis=0)
    base = _contrasting_colour(rng, under)
    side = 2 * math.ceil(radii.max()) + 3
    return _texture(rng, base, side, side).astype(np.float32)


def _paint(frame, texture, full, center, radius, angle, largest, opacity=1.0):
    """Draws the shape's ``full`` mask, textured, into ``frame`` (blended over it at
    ``opacity``)."""
    x, y, w, h = _bounding_box(full)
    if w == 0 or h == 0:
        return
    scale = radius / largest
    linear = scale * _rotation(angle)
    middle = (texture.shape[1] - 1) / 2
    shift = np.asarray(center) - linear @ [middle, middle] - (x, y)
    warped = cv2.warpAffine(texture, np.hstack([linear, shift[:, None]]), (w, h),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    region = full[y : y + h, x : x + w]
    under = frame[y : y + h, x : x + w][region].astype(np.float32)
    painted = opacity * warped[region] + (1 - opacity) * under
    frame[y : y + h, x : x + w][region] = np.clip(painted, 0, 255).astype(np.uint8)


def _flicker(rng, frames):
    """(T,) a hard-split shape's opacity: 1, but faint in some frames if it flickers."""
    opacity = np.ones(frames)
    if rng.random() < FLICKER_PROBABILITY:
        faint = rng.random(frames) < FLICKER_FRAME_RATE
        opacity[faint] = rng.uniform(*FLICKER_OPACITY, int(faint.sum()))
    return opacity


def render_video(seed, index, params=VideoShapesParams(), hard=False):
    """Video ``index`` of the split with ``seed`` (``hard``: in the hard split's style)."""
    rng = _rng(seed, index)
    frames = params.frames
    height, width = (int(s) for s in rng.integers(params.min_side, params.max_side + 1, 2))
    camera = _camera(rng, frames)
    extent = camera.max(axis=0)  # the background: the frame plus the camera's travel
    background = _background(rng, height + int(extent[1]), width + int(extent[0]))
    contrast, brightness, gain = _lighting(rng, frames)
    noise_amplitude = rng.uniform(*NOISE_RANGE)
    count = int(rng.integers(*(HARD_OBJECTS if hard else
                               (params.min_objects, params.max_objects)), endpoint=True))
    planned, visibility, crossings = _place_objects(rng, height, width, frames, count, hard)

    objects, textures = [], []
    for plan, (visible, seen) in zip(planned, visibility):
        centers, radii, angles = plan.motion.states(frames)
        textures.append(_shape_texture(rng, background, radii, centers, camera, seen))
        objects.append(VideoObject(
            plan.motion.class_index, plan.role, centers, radii, angles, list(plan.full),
            [v if s else None for v, s in zip(visible, seen)],
            _flicker(rng, frames) if hard else np.ones(frames),
        ))
    rendered = []
    for t in range(frames):
        (x, y) = camera[t]
        frame = background[y : y + height, x : x + width].copy()
        for obj, texture in zip(objects, textures):
            _paint(frame, texture, obj.full_masks[t], obj.centers[t], obj.radii[t], obj.angles[t],
                   obj.radii.max(), obj.opacity[t])
        offset = np.float32((1 - contrast[t]) * 128 + brightness[t] + 0.5)  # + 0.5: rounds
        lit = frame.astype(np.float32) * (gain[t] * np.float32(contrast[t])) + offset
        frame = np.clip(lit, 0, 255).astype(np.uint8)
        rendered.append(cv2.add(frame, _noise(rng, frame.shape, noise_amplitude), dtype=cv2.CV_8U))
    return VideoSample(rendered, objects, camera, crossings)


def track_annotation(masks):
    """YouTube-VIS ``segmentations`` (compressed RLE), ``bboxes`` (XYWH) and ``areas`` of a
    track's per-frame visible masks (None: not visible, null in the JSON); None for a track
    never visible."""
    if all(m is None for m in masks):
        return None
    segmentations, bboxes, areas = [], [], []
    for mask in masks:
        if mask is None:
            segmentations.append(None), bboxes.append(None), areas.append(None)
            continue
        rle = mask_util.encode(np.asfortranarray(mask.view(np.uint8)))
        segmentations.append({"size": [int(s) for s in rle["size"]],
                              "counts": rle["counts"].decode("ascii")})
        bboxes.append(list(_bounding_box(mask)))
        areas.append(int(np.count_nonzero(mask)))
    return {"segmentations": segmentations, "bboxes": bboxes, "areas": areas}


def _write_split(root, split, params):
    seed, size = params.seed_and_size(split)
    os.makedirs(os.path.join(root, split))
    videos, annotations = [], []
    for index in tqdm(range(size), desc=f"shape videos {split}", unit="video", leave=False):
        sample = render_video(seed, index, params, hard=split == "hard_val")
        name = f"{index:06d}"
        os.mkdir(os.path.join(root, split, name))
        file_names = [f"{name}/{t:05d}.jpg" for t in range(len(sample.frames))]
        for file_name, frame in zip(file_names, sample.frames):
            path = os.path.join(root, split, file_name)
            if not cv2.imwrite(path, frame, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]):
                raise OSError(f"could not write {path}")
        height, width = sample.frames[0].shape[:2]
        common = {"height": height, "width": width, "length": len(file_names)}
        videos.append({"id": index + 1, **common, "file_names": file_names})
        for obj in sample.objects:
            track = track_annotation(obj.masks)
            if track is not None:
                annotations.append({"id": len(annotations) + 1, "video_id": index + 1,
                                    "category_id": obj.class_index + 1, "iscrowd": 0,
                                    **track, **common})
    _write_annotations(root, split, {
        "info": {"description": f"rtinst synthetic moving-shapes videos v{VERSION}, {split}",
                 "fps": FPS},
        "licenses": [],
        "videos": videos,
        "annotations": annotations,
        "categories": categories(),
    })


def video_dataset_dir(cache_dir, params=VideoShapesParams()):
    """Where the video dataset for ``params`` lives (or will live) under ``cache_dir``."""
    digest = _digest({**dataclasses.asdict(params), "shapes_version": synthetic_shapes.VERSION})
    return os.path.join(cache_dir, "datasets", f"shapes-video-v{VERSION}-{digest}")


def generate_video_dataset(cache_dir, params=VideoShapesParams()):
    """The video dataset folder for ``params``, generated first if absent; atomic and safe when
    several processes call it at once (``synthetic_shapes._generate_atomically``)."""

    def write(staging):
        for split in SPLITS:
            _write_split(staging, split, params)

    return _generate_atomically(video_dataset_dir(cache_dir, params), write,
                                "the moving-shapes video dataset")
