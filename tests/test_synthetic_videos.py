"""The generated moving-shapes videos: determinism, prefixes, YouTube-VIS annotations that agree
with the rendering, identities kept through crossings, objects entering and leaving, camera
motion and lighting, the hard split's crowds, returns and flicker, atomic generation."""
import dataclasses
import os
import re

import cv2
import numpy as np
import pytest
from generated_files import annotations, file_bytes
from pycocotools import mask as mask_util

from rtinst.data import synthetic_shapes as shapes
from rtinst.data import synthetic_videos as videos

SMALL = videos.VideoShapesParams(train_videos=3, val_videos=2, hard_val_videos=2, frames=8)
DEFAULT = videos.VideoShapesParams()
DEFAULT_VIDEOS = 6  # the first videos of the default train split, checked for their properties


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return videos.generate_video_dataset(str(tmp_path_factory.mktemp("cache")), SMALL)


@pytest.fixture(scope="module")
def default_samples():
    return [videos.render_video(DEFAULT.train_seed, i, DEFAULT) for i in range(DEFAULT_VIDEOS)]


def test_rendering_is_deterministic():
    first, again = (videos.render_video(SMALL.val_seed, 1, SMALL) for _ in range(2))
    assert len(first.frames) == SMALL.frames
    assert all((a == b).all() for a, b in zip(first.frames, again.frames))
    assert (first.camera == again.camera).all() and first.crossings == again.crossings
    assert len(first.objects) == len(again.objects) >= SMALL.min_objects
    for a, b in zip(first.objects, again.objects):
        assert a.class_index == b.class_index and a.role == b.role
        assert (a.centers == b.centers).all() and (a.angles == b.angles).all()
        assert [m is None for m in a.masks] == [m is None for m in b.masks]
        assert all((m == n).all() for m, n in zip(a.masks, b.masks) if m is not None)
    other = videos.render_video(SMALL.val_seed, 2, SMALL)
    assert other.frames[0].shape != first.frames[0].shape or \
        (other.frames[0] != first.frames[0]).any()


def test_same_params_same_bytes_and_smaller_splits_are_prefixes(small_dataset, tmp_path):
    name = os.path.basename(small_dataset)
    assert re.fullmatch(rf"shapes-video-v{videos.VERSION}-[0-9a-f]{{10}}", name)
    cache = os.path.dirname(os.path.dirname(small_dataset))
    assert small_dataset == videos.video_dataset_dir(cache, SMALL)
    files = file_bytes(small_dataset)
    assert sorted(files) == sorted(
        [f"annotations/{s}.json" for s in videos.SPLITS]
        + [f"{split}/{v:06d}/{t:05d}.jpg" for split in videos.SPLITS
           for v in range(SMALL.seed_and_size(split)[1]) for t in range(SMALL.frames)]
    )
    again = videos.generate_video_dataset(str(tmp_path / "again"), SMALL)
    assert os.path.basename(again) == name and file_bytes(again) == files

    larger = dataclasses.replace(SMALL, train_videos=SMALL.train_videos + 2)
    root = videos.generate_video_dataset(str(tmp_path / "larger"), larger)
    assert os.path.basename(root) != name
    small, big = annotations(small_dataset, "train"), annotations(root, "train")
    assert len(big["videos"]) == larger.train_videos
    assert big["videos"][: SMALL.train_videos] == small["videos"]
    assert big["annotations"][: len(small["annotations"])] == small["annotations"]
    assert all(a["video_id"] > SMALL.train_videos
               for a in big["annotations"][len(small["annotations"]):])
    bigger_files = file_bytes(root)
    assert all(bigger_files[path] == content for path, content in files.items()
               if path != "annotations/train.json")  # the frames and the (same) val split

    reseeded = videos.generate_video_dataset(
        str(tmp_path / "other"), dataclasses.replace(SMALL, train_seed=99))
    other = file_bytes(reseeded)
    assert other["annotations/train.json"] != files["annotations/train.json"]
    assert other["annotations/val.json"] == files["annotations/val.json"]
    assert other["train/000000/00000.jpg"] != files["train/000000/00000.jpg"]


@pytest.mark.parametrize("split", videos.SPLITS)
def test_annotations_agree_with_the_rendering(small_dataset, split):
    content = annotations(small_dataset, split)
    assert {"info", "videos", "annotations", "categories"} <= set(content)
    assert content["categories"] == shapes.categories()
    assert [c["name"] for c in content["categories"]] == list(shapes.CLASSES)
    seed, size = SMALL.seed_and_size(split)
    assert [v["id"] for v in content["videos"]] == list(range(1, size + 1))
    assert len({a["id"] for a in content["annotations"]}) == len(content["annotations"])
    for video in content["videos"]:
        index = video["id"] - 1
        height, width, length = video["height"], video["width"], video["length"]
        assert SMALL.min_side <= min(height, width) <= max(height, width) <= SMALL.max_side
        assert video["file_names"] == [f"{index:06d}/{t:05d}.jpg" for t in range(SMALL.frames)]
        assert length == SMALL.frames
        sample = videos.render_video(seed, index, SMALL, hard=split == "hard_val")
        for name, rendered in zip(video["file_names"], sample.frames):
            path = os.path.join(small_dataset, split, name)
            assert cv2.imread(path).shape == (height, width, 3) == rendered.shape
            encoded = cv2.imencode(".jpg", rendered, [cv2.IMWRITE_JPEG_QUALITY, SMALL.jpeg_quality])
            with open(path, "rb") as f:
                assert f.read() == encoded[1].tobytes()  # the rendered frame, as JPEG
        tracks = [a for a in content["annotations"] if a["video_id"] == video["id"]]
        objects = [o for o in sample.objects if o.visible.any()]
        assert len(tracks) == len(objects) >= 1
        covered = np.zeros((length, height, width), int)
        for track, obj in zip(tracks, objects):
            assert track["category_id"] == obj.class_index + 1 and track["iscrowd"] == 0
            assert (track["height"], track["width"], track["length"]) == (height, width, length)
            assert all(len(track[k]) == length for k in ("segmentations", "bboxes", "areas"))
            for t, mask in enumerate(obj.masks):
                rle, box, area = (track[k][t] for k in ("segmentations", "bboxes", "areas"))
                if mask is None:
                    assert rle is None and box is None and area is None
                    continue
                assert rle["size"] == [height, width] and isinstance(rle["counts"], str)
                decoded = mask_util.decode({**rle, "counts": rle["counts"].encode()}).astype(bool)
                assert (decoded == mask).all()
                assert not (mask & ~obj.full_masks[t]).any()
                ys, xs = np.nonzero(mask)
                assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert area == len(xs) >= shapes.MIN_VISIBLE_AREA
                covered[t] += mask
        assert covered.max() <= 1  # visible masks of a frame are disjoint


def test_crossings_keep_each_objects_identity(default_samples):
    checked = 0
    for sample in default_samples:
        for back_index, front_index, t_meet in sample.crossings:
            back, front = sample.objects[back_index], sample.objects[front_index]
            # their true paths meet at t_meet: the centres are closest then
            gap = np.linalg.norm(back.centers - front.centers, axis=1)
            assert abs(int(np.argmin(gap)) - t_meet) <= 1
            assert gap.min() < 0.5 * min(back.radii.min(), front.radii.min())
            overlap = [(b & f).any() for b, f in zip(back.full_masks, front.full_masks)]
            assert overlap[round(t_meet)]
            # the front one passes in front: it hides part of the back one and is never hidden by it
            assert any((front.masks[t] is not None) and (front.masks[t] & back.full_masks[t]).any()
                       for t in range(DEFAULT.frames))
            for t in range(DEFAULT.frames):
                if back.masks[t] is not None:
                    assert not (back.masks[t] & front.full_masks[t]).any()
            # each track's masks lie in its own object's shape, around its own centre
            for obj in (back, front):
                for t, mask in enumerate(obj.masks):
                    if mask is not None:
                        assert not (mask & ~obj.full_masks[t]).any()
                        assert np.linalg.norm(_centroid(mask) - obj.centers[t]) <= obj.radii[t]
            # seen both before and after they meet, their centroids swap sides on their own paths
            both = np.flatnonzero(back.visible & front.visible)
            first, last = both.min(), both.max()
            assert first < t_meet < last
            offsets = back.centers - front.centers  # their true relative positions
            relative = offsets[last] - offsets[first]
            sides = []
            for t in (first, last):
                own_back, own_front = _centroid(back.masks[t]), _centroid(front.masks[t])
                sides.append(np.sign(np.dot(own_back - own_front, relative)))
                if not overlap[t]:  # apart: each nearer its own object's centre than the other's
                    for own, mine, other in ((own_back, back, front), (own_front, front, back)):
                        distance = np.linalg.norm(own - mine.centers[t])
                        assert distance < np.linalg.norm(own - other.centers[t])
            assert sides == [-1, 1]
            checked += 1
    assert checked >= 3


def test_default_videos_move_enter_leave_and_hide(default_samples):
    entering = leaving = hidden = 0
    for sample in default_samples:
        assert DEFAULT.min_objects <= len(sample.objects) <= DEFAULT.max_objects
        for obj in sample.objects:
            seen = np.flatnonzero(obj.visible)
            assert len(seen) >= videos.MIN_TRACK_FRAMES
            entering += seen[0] > 0 and obj.masks[0] is None
            leaving += seen[-1] < DEFAULT.frames - 1
            gaps = np.diff(seen) - 1
            assert gaps.max(initial=0) <= videos.MAX_HIDDEN_FRAMES
            hidden += np.count_nonzero(gaps)
            # smooth paths (constant acceleration), a fraction of the size per frame
            accelerations = np.diff(obj.centers, 2, axis=0)
            assert np.abs(accelerations - accelerations[0]).max() < 1e-9
            steps = np.linalg.norm(np.diff(obj.centers, axis=0), axis=1)
            assert (steps <= 0.25 * obj.radii[1:]).all()
            assert (np.abs(np.diff(obj.angles)) <= videos.MAX_SPIN + 1e-9).all()
            for t in range(1, DEFAULT.frames):
                a, b = obj.full_masks[t - 1], obj.full_masks[t]
                if obj.masks[t - 1] is not None and obj.masks[t] is not None:
                    assert np.count_nonzero(a & b) / np.count_nonzero(a | b) > 0.25
    assert entering > 0 and leaving > 0 and hidden > 0
    assert sum(len(s.crossings) > 0 for s in default_samples) >= DEFAULT_VIDEOS // 2


def test_hard_videos_crowd_cross_return_and_flicker():
    """The hard split: 4-7 shapes, crossings in every video, shapes leaving through a border and
    coming back (seen, unseen, seen again), shapes faint in some frames but still annotated;
    the default splits' videos are the same as before the hard split existed (no flicker)."""
    samples = [videos.render_video(DEFAULT.hard_val_seed, i, DEFAULT, hard=True)
               for i in range(4)]
    assert all(videos.HARD_OBJECTS[0] <= len(s.objects) <= videos.HARD_OBJECTS[1]
               for s in samples)
    assert all(len(s.crossings) >= 1 for s in samples)
    assert sum(len(s.crossings) for s in samples) > len(samples)
    returned = faint = 0
    for obj in (o for s in samples for o in s.objects):
        seen = np.flatnonzero(obj.visible)
        returned += obj.role == "return" and np.diff(seen).max(initial=1) > 1
        dim = (obj.opacity < 1) & obj.visible
        faint += int(dim.sum())
        assert (obj.opacity[dim] <= videos.FLICKER_OPACITY[1]).all()
    assert returned >= 1 and faint >= 3
    default = videos.render_video(DEFAULT.val_seed, 0, DEFAULT)
    assert all((o.opacity == 1).all() for o in default.objects)


def test_camera_pans_and_lighting_changes(default_samples):
    lighting_changes = 0
    for sample in default_samples:
        moves = np.abs(np.diff(sample.camera, axis=0)).sum(axis=1)
        assert moves.sum() > 0
        assert (moves <= 4).all()  # pans a few pixels per frame
        travelled = np.abs(sample.camera - sample.camera[0]).max(axis=1)
        first, later = 0, int(np.argmax(travelled >= 6)) or len(sample.frames) - 1
        dx, dy = sample.camera[later] - sample.camera[first]
        height, width = sample.frames[0].shape[:2]
        background = np.ones((height, width), bool)
        for obj in sample.objects:  # pixels of the background in both frames
            background &= ~obj.full_masks[first] & ~obj.full_masks[later]
            background &= ~np.roll(obj.full_masks[later], (dy, dx), (0, 1))
        background = cv2.erode(background.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
        ys, xs = np.nonzero(background)
        keep = (ys - dy >= 0) & (ys - dy < height) & (xs - dx >= 0) & (xs - dx < width)
        ys, xs = ys[keep], xs[keep]
        smooth = [cv2.GaussianBlur(sample.frames[t], (7, 7), 0).astype(float)
                  for t in (first, later)]
        def standard(values):  # the lighting is a gain and an offset per channel
            return (values - values.mean(axis=0)) / values.std(axis=0)

        start = standard(smooth[0][ys, xs])
        aligned = np.abs(start - standard(smooth[1][ys - dy, xs - dx])).mean()
        static = np.abs(start - standard(smooth[1][ys, xs])).mean()
        assert aligned < 0.7 * static, (aligned, static)  # the background moved with the camera
        # the same background points over the whole video: a gain / offset ramp
        ex, ey = sample.camera[-1] - sample.camera[0]
        region = (slice(max(0, ey), min(height, height + ey)),
                  slice(max(0, ex), min(width, width + ex)))
        shifted = (slice(max(0, -ey), min(height, height - ey)),
                   slice(max(0, -ex), min(width, width - ex)))
        mask = np.ones((height, width), bool)
        for obj in sample.objects:
            mask[region] &= ~obj.full_masks[0][region] & ~obj.full_masks[-1][shifted]
        start = sample.frames[0][region][mask[region]].astype(float)
        end = sample.frames[-1][shifted][mask[region]].astype(float)
        for channel in range(3):
            gain, offset = np.polyfit(start[:, channel], end[:, channel], 1)
            lighting_changes += abs(gain - 1) > 0.05 or abs(offset) > 8
    assert lighting_changes >= len(default_samples)  # of 3 channels per video


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    tiny = videos.VideoShapesParams(train_videos=1, val_videos=1, frames=3)
    write_split = videos._write_split

    def write_then_fail(root, split, params):
        write_split(root, split, params)
        raise OSError("No space left on device")

    monkeypatch.setattr(videos, "_write_split", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        videos.generate_video_dataset(str(tmp_path), tiny)
    assert os.listdir(tmp_path / "datasets") == []
    monkeypatch.undo()
    root = videos.generate_video_dataset(str(tmp_path), tiny)
    assert os.listdir(tmp_path / "datasets") == [os.path.basename(root)]
    assert len(annotations(root, "val")["videos"]) == 1
