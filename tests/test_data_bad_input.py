"""Users' COCO datasets with defects: registration, mapping and loading survive them or say
why not; and a real COCO subset goes through unchanged."""
import io
import itertools
import json
import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from PIL import Image

from rtinst.config import get_cfg
from rtinst.data import RobustDatasetMapper, register_coco_dataset, register_from_spec
from rtinst.data.train_loader import build_resumable_train_loader, check_masks
from rtinst.errors import DatasetError


GOOD = ["good1.png", "good2.png", "good3.png"]
UNREADABLE = ["corrupt.png", "truncated.png"]


@pytest.fixture(autouse=True)
def rtinst_logs_reach_caplog(monkeypatch):
    monkeypatch.setattr(logging.getLogger("rtinst"), "propagate", True)


def _png_bytes(width, height, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _annotation(annotation_id, image_id, x, y, w, h, segmentation=None):
    polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
    return {
        "id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "bbox": [x, y, w, h], "area": w * h,
        "segmentation": [polygon] if segmentation is None else segmentation,
    }  # fmt: skip


def _write_json(path, content):
    path.write_text(json.dumps(content))
    return str(path)


@pytest.fixture
def bad_dataset(tmp_path):
    """A registered dataset with good images, an image without annotations, a corrupt, a
    truncated and a missing image, and three degenerate annotations (ids 2, 4, 6)."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    names = GOOD + ["empty.png"] + UNREADABLE + ["missing.png"]
    images = [
        {"id": i + 1, "file_name": name, "width": 64 + 8 * i, "height": 48}
        for i, name in enumerate(names)
    ]
    for image in images[:4]:
        (image_dir / image["file_name"]).write_bytes(
            _png_bytes(image["width"], image["height"], image["id"])
        )
    (image_dir / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(500))
    (image_dir / "truncated.png").write_bytes(_png_bytes(images[5]["width"], 48, 6)[:2000])
    annotations = [
        _annotation(1, 1, 4, 4, 20, 20),
        _annotation(2, 1, 10, 10, 0, 12),  # w = 0
        _annotation(3, 2, 8, 8, 30, 20),
        _annotation(4, 2, 8, 8, 10, 10, segmentation=[]),  # empty polygon list
        _annotation(5, 3, 2, 2, 40, 30),
        _annotation(6, 3, 60, 30, 50, 30),  # sticks out of the 80 x 48 image
        _annotation(7, 5, 5, 5, 20, 20),
        _annotation(8, 6, 5, 5, 20, 20),
        _annotation(9, 7, 5, 5, 20, 20),
    ]
    json_file = _write_json(
        tmp_path / "annotations.json",
        {"images": images, "annotations": annotations,
         "categories": [{"id": 1, "name": "thing"}]},  # fmt: skip
    )
    name = f"bad_input_{tmp_path.name}"
    register_coco_dataset(name, json_file, str(image_dir))
    return SimpleNamespace(name=name, json_file=json_file, image_dir=str(image_dir))


@pytest.fixture
def cfg():
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.INPUT.MIN_SIZE_TEST = 32
    cfg.INPUT.MAX_SIZE_TEST = 64
    return cfg


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _record(dataset_name, file_name):
    return next(
        r for r in DatasetCatalog.get(dataset_name) if os.path.basename(r["file_name"]) == file_name
    )


def test_missing_images_skipped_degenerate_annotations_dropped(bad_dataset, caplog):
    with caplog.at_level(logging.WARNING):
        records = DatasetCatalog.get(bad_dataset.name)
    kept = {os.path.basename(r["file_name"]): [a["id"] for a in r["annotations"]] for r in records}
    assert kept == {
        "good1.png": [1], "good2.png": [3], "good3.png": [5],
        "empty.png": [], "corrupt.png": [7], "truncated.png": [8],
    }  # fmt: skip
    warnings = _warnings(caplog)
    (skipped,) = [w for w in warnings if "skipping" in w]
    assert "1 of 7 images" in skipped and "missing.png" in skipped
    (dropped,) = [w for w in warnings if "degenerate" in w]
    assert bad_dataset.json_file in dropped and "3 degenerate" in dropped
    assert "id 2 (image 1): bbox width or height <= 0" in dropped
    assert "id 4 (image 2): empty or invalid polygon" in dropped
    assert "id 6 (image 3): bbox outside the image" in dropped


@pytest.mark.parametrize("file_name", UNREADABLE)
def test_unreadable_image_skipped_in_training_fatal_in_inference(
    bad_dataset, cfg, caplog, file_name
):
    record = _record(bad_dataset.name, file_name)
    with caplog.at_level(logging.WARNING):
        assert RobustDatasetMapper(cfg, is_train=True)(record) is None
    assert any(record["file_name"] in w for w in _warnings(caplog))
    with pytest.raises(RuntimeError, match=f"cannot read image .*{file_name}"):
        RobustDatasetMapper(cfg, is_train=False)(record)


def test_image_size_mismatch_is_skipped_in_training(bad_dataset, cfg, caplog):
    record = {**_record(bad_dataset.name, "good1.png"), "width": 999}
    with caplog.at_level(logging.WARNING):
        assert RobustDatasetMapper(cfg, is_train=True)(record) is None
    assert any("good1.png" in w and "SizeMismatchError" in w for w in _warnings(caplog))


def test_good_image_maps_and_programming_errors_propagate(bad_dataset, cfg):
    mapped = RobustDatasetMapper(cfg, is_train=True)(_record(bad_dataset.name, "good1.png"))
    assert mapped["image"].shape[1] == 32 and len(mapped["instances"]) == 1
    with pytest.raises(KeyError):
        RobustDatasetMapper(cfg, is_train=True)({"height": 48, "width": 64})


def test_the_trainers_loader_never_yields_unreadable_images(bad_dataset, cfg):
    cfg.DATASETS.TRAIN = (bad_dataset.name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    mapper = RobustDatasetMapper(cfg, is_train=True)
    loader = build_resumable_train_loader(cfg, mapper, start_iter=0, seed=0)
    seen = set()
    for batch in itertools.islice(loader, 6):
        assert len(batch) == 2
        assert all(len(sample["instances"]) > 0 for sample in batch)
        seen |= {os.path.basename(sample["file_name"]) for sample in batch}
    assert seen <= set(GOOD) and len(seen) > 1


def test_missing_or_malformed_json_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nowhere.json")
    with pytest.raises(DatasetError, match=f"annotation file not found: {missing}"):
        register_coco_dataset("missing_json", missing, str(tmp_path))
    with pytest.raises(DatasetError, match="image directory not found"):
        register_coco_dataset("missing_dir", __file__, str(tmp_path / "nowhere"))

    cases = {
        "garbage.json": ("{not json", "cannot read .*garbage.json as JSON"),
        "list.json": ([1, 2], "list.json is not a COCO annotation file"),
        "no_annotations.json": (
            {"images": [], "categories": []},
            "no_annotations.json is not a COCO annotation file: missing key 'annotations'",
        ),
        "no_file_name.json": (
            {"images": [{"id": 1, "width": 2, "height": 2}], "annotations": [], "categories": []},
            "no_file_name.json: entry #0 of 'images' is missing key 'file_name'",
        ),
        "no_images.json": (
            {"images": [], "annotations": [], "categories": []},
            "no image listed in .*no_images.json",
        ),
    }
    for file_name, (content, message) in cases.items():
        path = tmp_path / file_name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        name = f"malformed_{file_name}"
        register_coco_dataset(name, str(path), str(tmp_path))
        with pytest.raises(DatasetError, match=message):
            DatasetCatalog.get(name)


def test_all_images_missing_is_a_clear_error(tmp_path):
    json_file = _write_json(
        tmp_path / "a.json",
        {"images": [{"id": 1, "file_name": "gone.png", "width": 4, "height": 4}],
         "annotations": [], "categories": [{"id": 1, "name": "thing"}]},  # fmt: skip
    )
    register_coco_dataset("all_missing", json_file, str(tmp_path))
    with pytest.raises(DatasetError, match="no image listed in .*a.json exists .*gone.png"):
        DatasetCatalog.get("all_missing")


def test_register_twice(bad_dataset, tmp_path):
    register_coco_dataset(bad_dataset.name, bad_dataset.json_file, bad_dataset.image_dir)
    with pytest.raises(DatasetError, match=f"'{bad_dataset.name}' is already registered"):
        register_coco_dataset(bad_dataset.name, bad_dataset.json_file, str(tmp_path))


@pytest.mark.parametrize("spec", ["no_equals_sign", "name=only.json", "=a.json,images", "x=,dir"])
def test_malformed_spec_is_a_clear_error(spec):
    with pytest.raises(DatasetError, match=f"malformed dataset spec '{spec}'"):
        register_from_spec(spec)


def test_spec_registers(bad_dataset, tmp_path):
    spec = f"from_spec_{tmp_path.name}={bad_dataset.json_file},{bad_dataset.image_dir}"
    name = register_from_spec(spec)
    assert len(DatasetCatalog.get(name)) == 6


def test_real_coco_subset(cfg, coco_mini):
    json_file = os.path.join(coco_mini, "annotations", "instances_train2017.json")
    register_coco_dataset("coco_mini_rtinst_test", json_file, os.path.join(coco_mini, "train2017"))
    records = DatasetCatalog.get("coco_mini_rtinst_test")
    with open(json_file) as f:
        coco = json.load(f)
    assert len(records) == len(coco["images"])
    annotations = [a for r in records for a in r["annotations"]]
    assert len(annotations) == len(coco["annotations"])
    crowd = [a for a in annotations if a["iscrowd"]]
    assert crowd and all(isinstance(a["segmentation"], dict) for a in crowd)
    assert all(
        len(p) >= 6 and len(p) % 2 == 0
        for a in annotations
        if not a["iscrowd"]
        for p in a["segmentation"]
    )

    cfg.INPUT.MIN_SIZE_TRAIN = (320,)
    cfg.INPUT.MAX_SIZE_TRAIN = 512
    mapper = RobustDatasetMapper(cfg, is_train=True)
    for record in records[:2]:
        mapped = mapper(record)
        instances = mapped["instances"]
        assert min(mapped["image"].shape[1:]) == 320
        assert 0 < len(instances) <= sum(not a["iscrowd"] for a in record["annotations"])
        assert len(instances.gt_masks) == len(instances)


def test_mask_model_on_box_only_annotations_is_a_clear_error():
    masked = {"file_name": "a.jpg", "annotations": [{"bbox": [0, 0, 4, 4],
                                                     "segmentation": [[0, 0, 4, 0, 4, 4]]}]}
    box_only = {"file_name": "b.jpg", "annotations": [{"bbox": [0, 0, 4, 4]}]}
    check_masks([masked, {"file_name": "c.jpg", "annotations": []}], ["mine"])
    with pytest.raises(DatasetError, match="1 image.*of mine.*b.jpg.*MASK_ON"):
        check_masks([masked, box_only], ["mine"])


def _one_image_dataset(tmp_path, name, annotations, width=64, height=48, mode="RGB"):
    """A registered dataset of one PNG (``mode``: "RGB", or "I;16" for a 16-bit grey one) and
    ``annotations``."""
    image_dir = tmp_path / "images"
    image_dir.mkdir(exist_ok=True)
    if mode == "I;16":
        ramp = np.linspace(0, 65535, width * height).reshape(height, width).astype(np.uint16)
        Image.fromarray(ramp).save(image_dir / "a.png")
    else:
        (image_dir / "a.png").write_bytes(_png_bytes(width, height, 0))
    json_file = _write_json(
        tmp_path / f"{name}.json",
        {"images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
         "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]},  # fmt: skip
    )
    register_coco_dataset(name, json_file, str(image_dir))
    return json_file


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "7"])
def test_non_finite_polygon_coordinates_are_dropped(tmp_path, caplog, bad):
    polygon = [4, 4, 20, 4, 20, bad, 4, 20]
    annotations = [_annotation(1, 1, 4, 4, 16, 16), _annotation(2, 1, 4, 4, 16, 16, [polygon])]
    name = f"nan_polygon_{tmp_path.name}"
    _one_image_dataset(tmp_path, name, annotations)
    with caplog.at_level(logging.WARNING):
        (record,) = DatasetCatalog.get(name)
    assert [a["id"] for a in record["annotations"]] == [1]
    assert any("id 2 (image 1): polygon coordinate not a finite number" in w
               for w in _warnings(caplog))


@pytest.mark.parametrize("rle, problem", [
    ({"size": [48, 64], "counts": [100, 5]}, "RLE counts do not cover the image"),
    ({"size": [4800, 64], "counts": "abc"}, "RLE size [4800, 64] is not the image's [48, 64]"),
    ({"size": [float("nan"), 64], "counts": "abc"}, "RLE size not [height, width]"),
    ({"size": [48, 64], "counts": 3}, "RLE counts neither a list nor a string"),
])
def test_inconsistent_rle_masks_are_dropped(tmp_path, caplog, rle, problem):
    annotations = [_annotation(1, 1, 4, 4, 16, 16), _annotation(2, 1, 4, 4, 16, 16, rle)]
    name = f"bad_rle_{tmp_path.name}"
    _one_image_dataset(tmp_path, name, annotations)
    with caplog.at_level(logging.WARNING):
        (record,) = DatasetCatalog.get(name)
    assert [a["id"] for a in record["annotations"]] == [1]
    assert any(f"id 2 (image 1): {problem}" in w for w in _warnings(caplog))


def test_an_annotation_free_dataset_is_a_clear_error(tmp_path, cfg):
    name = f"no_annotations_{tmp_path.name}"
    _one_image_dataset(tmp_path, name, [])
    cfg.DATASETS.TRAIN = (name,)
    with pytest.raises(DatasetError, match=f"DATASETS.TRAIN \\('{name}',\\): nothing to train on"):
        build_resumable_train_loader(cfg, RobustDatasetMapper(cfg, is_train=True), 0, 0)


def test_a_16_bit_png_is_scaled_to_8_bits(tmp_path, cfg):
    """Pillow's RGB conversion clips 16-bit values: the ramp 0..65535 became all white."""
    name = f"sixteen_bit_{tmp_path.name}"
    _one_image_dataset(tmp_path, name, [_annotation(1, 1, 4, 4, 16, 16)], mode="I;16")
    (record,) = DatasetCatalog.get(name)
    image = RobustDatasetMapper(cfg, is_train=False)(record)["image"]
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert image.min() < 10 and image.max() > 245  # resized: the ends interpolated
    assert 110 < image.float().mean() < 145  # the ramp's mean, 127.5


def test_a_float_image_outside_0_1_is_skipped_naming_the_file(tmp_path, cfg, caplog):
    name = f"float_image_{tmp_path.name}"
    _one_image_dataset(tmp_path, name, [_annotation(1, 1, 4, 4, 16, 16)])
    (record,) = DatasetCatalog.get(name)
    tiff = tmp_path / "images" / "a.tiff"
    Image.fromarray(np.full((48, 64), 3.5, np.float32)).save(tiff)
    record["file_name"] = str(tiff)
    with caplog.at_level(logging.WARNING):
        assert RobustDatasetMapper(cfg, is_train=True)(record) is None
    assert any(str(tiff) in w and "outside [0, 1]" in w for w in _warnings(caplog))
