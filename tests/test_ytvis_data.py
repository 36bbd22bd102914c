"""YouTube-VIS-format video datasets (rtinst/data/ytvis.py): loading, the frames view, clear
errors naming the file, registration from the command line, and the clip mapper
(rtinst/data/video_mapper.py)."""
import json
import logging

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from rtinst.data import register_video_from_spec, register_ytvis_dataset
from rtinst.data import synthetic_videos
from rtinst.data.train_loader import check_masks
from rtinst.data.video_mapper import VideoClipMapper, sample_frame_indices
from rtinst.data.ytvis import load_ytvis_json
from rtinst.engine import load_config
from rtinst.errors import DatasetError

HEIGHT, WIDTH, LENGTH = 24, 32, 3


def rle(x0, x1):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8, order="F")
    mask[4:12, x0:x1] = 1
    encoded = mask_util.encode(mask)
    encoded["counts"] = encoded["counts"].decode()
    return encoded


def write_video_dataset(folder, **changes):
    """A two-video YouTube-VIS file with frames; ``changes`` replace top-level sections."""
    frames = folder / "frames"
    videos = []
    for video_id in (1, 2):
        names = [f"v{video_id}/{t:05d}.jpg" for t in range(LENGTH)]
        for t, name in enumerate(names):
            (frames / name).parent.mkdir(parents=True, exist_ok=True)
            image = np.full((HEIGHT, WIDTH, 3), 40 * t, np.uint8)
            image[:, : WIDTH // 2, 2] = 255  # the left half red: shows a horizontal flip
            cv2.imwrite(str(frames / name), image)
        videos.append({"id": video_id, "height": HEIGHT, "width": WIDTH, "length": LENGTH,
                       "file_names": names})
    track = {"id": 7, "video_id": 1, "category_id": 3, "iscrowd": 0,
             "segmentations": [rle(2, 10), None, rle(6, 14)],
             "bboxes": [[2, 4, 8, 8], None, [6, 4, 8, 8]], "areas": [64, None, 64]}
    other = {"id": 8, "video_id": 1, "category_id": 5, "iscrowd": 0,
             "segmentations": [rle(20, 30)] * 3, "bboxes": [[20, 4, 10, 8]] * 3,
             "areas": [80] * 3}
    content = {"videos": videos, "annotations": [track, other],
               "categories": [{"id": 5, "name": "dog"}, {"id": 3, "name": "cat"}]}
    content.update(changes)
    json_file = folder / "ytvis.json"
    json_file.write_text(json.dumps(content))
    return json_file, frames


@pytest.fixture
def registered(tmp_path):
    names = []

    def register(name, *args):
        register_ytvis_dataset(name, *args)
        names.append(name)
        return name

    yield register
    for name in set(names):
        for n in (name, name + "_frames"):
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def test_video_records(tmp_path, registered):
    name = registered("tiny_videos", *write_video_dataset(tmp_path))
    first, second = DatasetCatalog.get(name)
    assert (first["video_id"], first["length"], first["height"], first["width"]) == (1, 3, 24, 32)
    assert first["file_names"][2] == str(tmp_path / "frames" / "v1" / "00002.jpg")
    assert second["annotations"] == []
    track, other = first["annotations"]
    # categories sorted by id: cat (3) -> 0, dog (5) -> 1
    assert MetadataCatalog.get(name).thing_classes == ["cat", "dog"]
    assert MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id == {3: 0, 5: 1}
    assert (track["id"], track["category_id"], other["category_id"]) == (7, 0, 1)
    assert track["segmentations"][1] is None and track["bboxes"][2] == [6, 4, 8, 8]


def test_frames_view(tmp_path, registered):
    name = registered("tiny_videos", *write_video_dataset(tmp_path))
    frames = DatasetCatalog.get(name + "_frames")
    assert len(frames) == 6
    assert [a["track_id"] for a in frames[1]["annotations"]] == [8]  # track 7 hidden there
    assert [a["track_id"] for a in frames[2]["annotations"]] == [7, 8]
    assert frames[2]["annotations"][0]["bbox"] == [6, 4, 8, 8]
    assert frames[0]["file_name"].endswith("v1/00000.jpg")
    assert MetadataCatalog.get(name + "_frames").evaluator_type == "coco"


def test_class_count_from_a_video_dataset(tmp_path):
    json_file, frames = write_video_dataset(tmp_path)
    cfg = load_config("configs/BlendMask/MNV2_FPN_shapes.yaml",
                      ["DATASETS.TEST", "('cli_videos',)", "DATASETS.TRAIN", "()"],
                      video_datasets=[f"cli_videos={json_file},{frames}"])
    assert cfg.MODEL.FCOS.NUM_CLASSES == 2
    for n in ("cli_videos", "cli_videos_frames"):
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


@pytest.mark.parametrize("change, message", [
    ({"videos": [{"id": 1, "height": 2, "width": 2, "file_names": ["nope.jpg"]}]},
     r"ytvis.json: video 1 has 1 of its 1 frames missing under .*frames: .*nope.jpg"),
    ({"annotations": [{"id": 3, "video_id": 1, "category_id": 3,
                       "segmentations": [None, None], "bboxes": [None, None]}]},
     r"ytvis.json: annotation 3 \(video 1\): 'segmentations' has 2 entries, the video 3 frames"),
    ({"annotations": [{"id": 3, "video_id": 9, "category_id": 3}]},
     r"ytvis.json: annotations refer to video id\(s\) 9"),
    ({"annotations": [{"id": 3, "video_id": 1, "category_id": 4,
                       "bboxes": [[0, 0, 2, 2]] * 3}]},
     r"ytvis.json: annotation 3 uses category_id 4, which is not in 'categories'"),
    ({"categories": None}, r"ytvis.json is not a YouTube-VIS file: missing key 'categories'"),
    ({"videos": [{"id": 1}]}, r"ytvis.json: entry #0 of 'videos' is missing key 'file_names'"),
])
def test_bad_video_data_names_the_file(tmp_path, change, message):
    json_file, frames = write_video_dataset(tmp_path, **change)
    with pytest.raises(DatasetError, match=message):
        load_ytvis_json(str(json_file), str(frames))


def test_length_field_disagreeing_with_the_frames(tmp_path):
    json_file, frames = write_video_dataset(tmp_path)
    content = json.loads(json_file.read_text())
    content["videos"][0]["length"] = 5
    json_file.write_text(json.dumps(content))
    with pytest.raises(DatasetError, match="video 1 says length 5 but lists 3 file_names"):
        load_ytvis_json(str(json_file), str(frames))


def test_never_visible_tracks_are_dropped_with_a_warning(tmp_path, caplog):
    empty = {"id": 9, "video_id": 2, "category_id": 3, "segmentations": [None] * 3,
             "bboxes": [None] * 3}
    json_file, frames = write_video_dataset(tmp_path, annotations=[empty])
    with caplog.at_level(logging.WARNING):
        records = load_ytvis_json(str(json_file), str(frames))
    assert records[1]["annotations"] == []
    assert "dropping 1 track(s) never visible: id 9 (video 2)" in caplog.text


def test_a_split_without_annotations_loads(tmp_path):
    json_file, frames = write_video_dataset(tmp_path)
    content = json.loads(json_file.read_text())
    del content["annotations"]
    json_file.write_text(json.dumps(content))
    assert [r["annotations"] for r in load_ytvis_json(str(json_file), str(frames))] == [[], []]


def test_registration_errors(tmp_path, registered):
    json_file, frames = write_video_dataset(tmp_path)
    registered("tiny_videos", json_file, frames)
    registered("tiny_videos", json_file, frames)  # the same files again: nothing happens
    with pytest.raises(DatasetError, match="already registered"):
        register_ytvis_dataset("tiny_videos", json_file, tmp_path)
    with pytest.raises(DatasetError, match="annotation file not found: .*missing.json"):
        register_ytvis_dataset("other_videos", tmp_path / "missing.json", frames)
    with pytest.raises(DatasetError, match="malformed video dataset spec"):
        register_video_from_spec("novideos.json")


def test_standard_split_missing_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(DatasetError, match=r"'ytvis_2019_val': annotation file not found: "
                       r".*ytvis_2019/valid.json \(set \$DETECTRON2_DATASETS"):
        DatasetCatalog.get("ytvis_2019_val")
    assert "ovis_train" in DatasetCatalog.list() and "ytvis_2021_val_frames" in DatasetCatalog.list()


def test_generated_videos_load_like_a_users(tmp_path, registered):
    """The moving-shapes generator's YouTube-VIS file goes through the user's path."""
    params = synthetic_videos.VideoShapesParams(train_videos=1, val_videos=2, hard_val_videos=1,
                                                frames=4)
    root = synthetic_videos.generate_video_dataset(str(tmp_path), params)
    name = registered("generated_videos", f"{root}/annotations/val.json", f"{root}/val")
    videos = DatasetCatalog.get(name)
    assert len(videos) == 2 and all(v["length"] == 4 for v in videos)
    assert MetadataCatalog.get(name).thing_classes == list(synthetic_videos.CLASSES)
    assert any(v["annotations"] for v in videos)


def test_sample_frame_indices():
    rng = np.random.RandomState(0)
    for _ in range(50):
        indices = sample_frame_indices(20, 3, 2, rng)
        assert indices == sorted(set(indices)) and len(indices) == 3
        assert max(indices) - min(indices) <= 4  # all within 2 of the first drawn
    assert sample_frame_indices(2, 5, 1, rng) == [0, 1]  # a short video gives what it has
    # range 0: no frame within it, so the others come from the whole video
    assert len(set(sample_frame_indices(10, 3, 0, rng))) == 3


def test_clip_mapper_augments_every_frame_alike(tmp_path, registered):
    name = registered("tiny_videos", *write_video_dataset(tmp_path))
    video = DatasetCatalog.get(name)[0]
    cfg = load_config("configs/BlendMask/MNV2_FPN_shapes.yaml",
                      ["INPUT.VIDEO.SAMPLING_FRAME_NUM", "3", "INPUT.MIN_SIZE_TRAIN", "(48,)",
                       "INPUT.MAX_SIZE_TRAIN", "100", "DATASETS.TRAIN", "()",
                       "DATASETS.TEST", "()"])
    mapper = VideoClipMapper(cfg, is_train=True)
    flips = set()
    for seed in range(8):
        np.random.seed(seed)
        clip = mapper(video)
        assert clip["frame_indices"] == [0, 1, 2]
        frames = clip["frames"]
        assert all(f["image"].shape == (3, 48, 64) for f in frames)  # 24x32 resized by 2
        red_left = [bool(f["image"][2, :, :32].float().mean() > f["image"][2, :, 32:].float().mean())
                    for f in frames]
        assert len(set(red_left)) == 1, "the flip differs between frames of one clip"
        flips.add(red_left[0])
        ids = [f["instances"].gt_ids.tolist() for f in frames]
        assert ids == [[7, 8], [8], [7, 8]]
        boxes = frames[0]["instances"].gt_boxes.tensor[0]
        expected = torch.tensor([4.0, 8, 20, 24]) if red_left[0] else torch.tensor([44.0, 8, 60, 24])
        assert torch.allclose(boxes, expected)
        mask = frames[0]["instances"].gt_masks.tensor[0]
        assert mask.sum() == 16 * 16  # the 8x8 RLE mask at twice the size
    assert flips == {True, False}  # both happen over the seeds


def test_rle_masks_need_the_bitmask_format():
    record = {"file_name": "f.jpg", "annotations": [
        {"segmentation": {"size": [2, 2], "counts": "04"}, "iscrowd": 0}]}
    with pytest.raises(DatasetError, match="f.jpg has run-length-encoded masks.*bitmask"):
        check_masks([record], ["mine_frames"], "polygon")
    check_masks([record], ["mine_frames"], "bitmask")
    crowd = {"file_name": "c.jpg", "annotations": [dict(record["annotations"][0], iscrowd=1)]}
    check_masks([crowd], ["coco"], "polygon")  # crowds are dropped by the mapper


def test_video_datasets_are_checked_before_a_model_is_built(tmp_path, registered):
    """``check_video_datasets`` (train_net.py at start-up) loads the video datasets named in
    DATASETS.TRAIN / TEST, also through their ``_frames``: the loader's error names the file."""
    from rtinst.engine.defaults import check_video_datasets

    json_file, frames = write_video_dataset(tmp_path)
    (frames / "v2" / "00001.jpg").unlink()
    registered("gappy_videos", json_file, frames)
    cfg = load_config("configs/BlendMask/MNV2_FPN_shapes.yaml",
                      ["DATASETS.TRAIN", "()", "DATASETS.TEST", "('gappy_videos_frames',)"])
    with pytest.raises(DatasetError, match=r"ytvis.json: video 2 has 1 of its 3 frames missing"):
        check_video_datasets(cfg)
    cfg.DATASETS.TEST = ()
    check_video_datasets(cfg)  # no video dataset named: nothing loaded
