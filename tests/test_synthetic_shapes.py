"""The generated "shapes" dataset: determinism, annotation sanity, lazy registration, atomicity."""
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from generated_files import annotations, file_bytes
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_util

from rtinst.config import get_cfg
from rtinst.data import datasets, get_cache_dir, set_cache_dir
from rtinst.data import synthetic_shapes as shapes

SMALL = shapes.ShapesParams(train_images=8, val_images=3)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return shapes.generate_dataset(str(tmp_path_factory.mktemp("cache")), SMALL)


def test_same_seed_same_bytes_other_seed_other_data(small_dataset, tmp_path):
    again = shapes.generate_dataset(str(tmp_path / "again"), SMALL)
    assert os.path.basename(again) == os.path.basename(small_dataset)
    files = file_bytes(small_dataset)
    assert files == file_bytes(again)
    assert sorted(files) == sorted(
        [f"annotations/{s}.json" for s in shapes.SPLITS]
        + [f"train/{i:06d}.jpg" for i in range(SMALL.train_images)]
        + [f"val/{i:06d}.jpg" for i in range(SMALL.val_images)]
    )

    reseeded = shapes.generate_dataset(
        str(tmp_path / "other"), dataclasses.replace(SMALL, train_seed=99)
    )
    assert os.path.basename(reseeded) != os.path.basename(small_dataset)
    other = file_bytes(reseeded)
    assert other["annotations/train.json"] != files["annotations/train.json"]
    assert all(other[f"train/{i:06d}.jpg"] != files[f"train/{i:06d}.jpg"] for i in range(8))
    assert other["annotations/val.json"] == files["annotations/val.json"]  # same val seed


def test_splits_differ(small_dataset):
    train, val = annotations(small_dataset, "train"), annotations(small_dataset, "val")
    files = file_bytes(small_dataset)
    assert train["annotations"][: len(val["annotations"])] != val["annotations"]
    assert all(files[f"train/{i:06d}.jpg"] != files[f"val/{i:06d}.jpg"] for i in range(3))


@pytest.mark.parametrize("split", shapes.SPLITS)
def test_annotations_are_consistent(small_dataset, split):
    coco = annotations(small_dataset, split)
    assert coco["categories"] == [
        {"id": i + 1, "name": name, "supercategory": "shape"}
        for i, name in enumerate(shapes.CLASSES)
    ]
    images = {image["id"]: image for image in coco["images"]}
    assert len(images) == len(coco["images"]) == SMALL.seed_and_size(split)[1]
    annotation_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(annotation_ids)) == len(annotation_ids)
    per_image = {image_id: 0 for image_id in images}
    for annotation in coco["annotations"]:
        image = images[annotation["image_id"]]
        per_image[image["id"]] += 1
        height, width = image["height"], image["width"]
        assert SMALL.min_side <= min(height, width) <= max(height, width) <= SMALL.max_side
        assert 1 <= annotation["category_id"] <= len(shapes.CLASSES)
        assert annotation["iscrowd"] == 0 and annotation["area"] > 0
        points = np.concatenate([np.reshape(p, (-1, 2)) for p in annotation["segmentation"]])
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in annotation["segmentation"])
        assert points.min() >= 0 and (points.max(axis=0) <= (width, height)).all()
        x, y, w, h = annotation["bbox"]
        extent = [*points.min(axis=0), *(points.max(axis=0) - points.min(axis=0))]
        np.testing.assert_allclose(extent, [x, y, w, h], atol=1.0)
        rle = mask_util.merge(mask_util.frPyObjects(annotation["segmentation"], height, width))
        assert mask_util.area(rle) == annotation["area"]
    assert all(1 <= count <= SMALL.max_instances for count in per_image.values()), per_image


def test_default_images_have_occlusion_and_exact_polygons():
    params = shapes.ShapesParams()
    occluded = 0
    for index in range(10):  # the first images of the default train split
        sample = shapes.render_sample(params.train_seed, index, params)
        height, width = sample.image.shape[:2]
        covered = np.zeros((height, width), int)
        for shape, visible in zip(sample.shapes, sample.visible_masks):
            area = np.count_nonzero(visible)
            assert shapes.MIN_VISIBLE_FRACTION * shape.area <= area <= shape.area
            assert not (visible & ~shape.mask).any()
            occluded += area < shape.area
            covered += visible
            annotation = shapes.visible_annotation(visible)
            rle = mask_util.frPyObjects(annotation["segmentation"], height, width)
            rasterized = mask_util.decode(mask_util.merge(rle)).astype(bool)
            assert (rasterized == visible).all()
        assert covered.max() <= 1  # each pixel belongs to at most one instance
    assert occluded > 0


def test_interrupted_generation_leaves_nothing_usable(tmp_path, monkeypatch):
    write_split = shapes._write_split

    def write_then_fail(root, split, params):
        write_split(root, split, params)
        raise OSError("No space left on device")

    monkeypatch.setattr(shapes, "_write_split", write_then_fail)
    with pytest.raises(OSError, match="No space left"):
        shapes.generate_dataset(str(tmp_path), SMALL)
    assert os.listdir(tmp_path / "datasets") == []
    monkeypatch.undo()
    root = shapes.generate_dataset(str(tmp_path), SMALL)
    assert os.listdir(tmp_path / "datasets") == [os.path.basename(root)]


def test_losing_the_race_keeps_the_winners_dataset(tmp_path, monkeypatch):
    write_split = shapes._write_split

    def other_process_finishes_first(root, split, params):
        monkeypatch.setattr(shapes, "_write_split", write_split)
        shapes.generate_dataset(str(tmp_path), SMALL)
        write_split(root, split, params)

    monkeypatch.setattr(shapes, "_write_split", other_process_finishes_first)
    root = shapes.generate_dataset(str(tmp_path), SMALL)
    assert os.listdir(tmp_path / "datasets") == [os.path.basename(root)]
    assert len(annotations(root, "val")["images"]) == SMALL.val_images


# Loads synthetic_shapes.py on its own (rtinst/__init__ would import torch: seconds per process),
# waits until both processes are ready, then generates.
CONCURRENT_GENERATION = """
import importlib.util, os, sys, time
cache, barrier = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("synthetic_shapes", sys.argv[3])
shapes = sys.modules["synthetic_shapes"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shapes)
open(os.path.join(barrier, str(os.getpid())), "w").close()
while len(os.listdir(barrier)) < 2:
    time.sleep(0.01)
print(shapes.generate_dataset(cache, shapes.ShapesParams(train_images=20, val_images=5)))
"""


def test_two_processes_generate_one_consistent_dataset(tmp_path):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    script = [CONCURRENT_GENERATION, str(cache), str(barrier), shapes.__file__]
    processes = [
        subprocess.Popen([sys.executable, "-c", *script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    roots = {p.communicate(timeout=120)[0].strip() for p in processes}
    assert [p.returncode for p in processes] == [0, 0]
    assert len(roots) == 1
    (root,) = roots
    assert os.listdir(cache / "datasets") == [os.path.basename(root)]
    reference = shapes.generate_dataset(
        str(tmp_path / "reference"), shapes.ShapesParams(train_images=20, val_images=5)
    )
    assert file_bytes(root) == file_bytes(reference)


@pytest.mark.slow
def test_importing_rtinst_generates_nothing(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import rtinst\n"
        "from detectron2.data import DatasetCatalog, MetadataCatalog\n"
        "assert {'shapes_train', 'shapes_val'} <= set(DatasetCatalog.list())\n"
        "print(MetadataCatalog.get('shapes_val').json_file)\n"
    )
    env = {**os.environ, "RTINST_CACHE": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().startswith(str(cache / "datasets" / "shapes-v"))
    assert not cache.exists()


@pytest.fixture
def small_registered_shapes(tmp_path, monkeypatch):
    """shapes_* registered with SMALL params, cached under tmp_path."""
    monkeypatch.setattr(datasets, "SHAPES_PARAMS", SMALL)
    set_cache_dir(str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    set_cache_dir(None)


def test_first_get_generates_lazily(small_registered_shapes):
    cache = small_registered_shapes
    assert not (cache / "datasets").exists()
    records = DatasetCatalog.get("shapes_val")
    assert len(records) == SMALL.val_images
    assert all(os.path.isfile(r["file_name"]) for r in records)
    meta = MetadataCatalog.get("shapes_val")
    assert meta.json_file == os.path.join(datasets.ensure_generated(), "annotations", "val.json")
    assert meta.json_file.startswith(str(cache)) and os.path.isfile(meta.json_file)
    assert meta.image_root == os.path.dirname(records[0]["file_name"])
    assert meta.thing_classes == list(shapes.CLASSES)
    assert len(meta.thing_colors) == len(shapes.CLASSES) and meta.evaluator_type == "coco"
    assert {a["category_id"] for r in records for a in r["annotations"]} <= set(range(6))


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("RTINST_CACHE", str(tmp_path / "env"))
    try:
        assert get_cache_dir() == str(tmp_path / "env")
        set_cache_dir(str(tmp_path / "set"))
        assert get_cache_dir() == str(tmp_path / "set")
        assert MetadataCatalog.get("shapes_train").json_file.startswith(str(tmp_path / "set"))
        cfg = get_cfg()
        cfg.DATASETS.CACHE_DIR = str(tmp_path / "cfg")
        assert get_cache_dir(cfg) == str(tmp_path / "cfg")
        set_cache_dir(None)
        monkeypatch.delenv("RTINST_CACHE")
        assert get_cache_dir() == os.path.expanduser("~/.cache/rtinst")
    finally:
        monkeypatch.undo()
        set_cache_dir(None)
