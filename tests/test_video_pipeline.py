"""The video path end to end: evaluation of a video dataset through the online tracker
(``Trainer.test`` -> ``inference_on_videos`` -> ``YTVISEvaluator``), ``VideoPredictor``, the
demo's track drawing and the benchmark's video rows."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from detectron2.modeling import build_model

from rtinst.benchmark import BenchmarkSettings, ModelSpec, random_images, run_benchmark
from rtinst.benchmark.tracking import (evaluate_tracker, load_detections, record_detections,
                                       save_detections)
from rtinst.data import RobustDatasetMapper, build_dataset_mapper, register_ytvis_dataset
from rtinst.data import synthetic_videos
from rtinst.data.video_mapper import VideoClipMapper
from rtinst.engine import Trainer, VideoPredictor, load_config
from rtinst.errors import ConfigError
from tiny_models import tiny_fcos_cfg
from train_net_runner import run_train_net

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/BlendMask/MNV2_FPN_shapes.yaml"
FCOS_CONFIG = REPO / "configs/FCOS/MNV2_FPN_shapes.yaml"
PARAMS = synthetic_videos.VideoShapesParams(train_videos=1, val_videos=3, hard_val_videos=1,
                                           frames=8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = synthetic_videos.generate_video_dataset(str(tmp_path_factory.mktemp("cache")), PARAMS)
    name = "pipeline_videos"
    register_ytvis_dataset(name, f"{root}/annotations/val.json", f"{root}/val")
    yield name
    for n in (name, name + "_frames"):
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


class GroundTruthModel(torch.nn.Module):
    """Returns each frame's ground-truth objects as detections (score 0.9): tracking and
    evaluation alone decide the results."""

    def __init__(self, dataset_name):
        super().__init__()
        self.frames = {}
        for video in DatasetCatalog.get(dataset_name):
            for t, file_name in enumerate(video["file_names"]):
                visible = [a for a in video["annotations"] if a["segmentations"][t] is not None]
                self.frames[file_name] = (video["height"], video["width"], visible, t)

    def forward(self, batched_inputs):
        height, width, visible, t = self.frames[batched_inputs[0]["file_name"]]
        instances = Instances((height, width))
        masks = [mask_util.decode(a["segmentations"][t]) for a in visible]
        instances.pred_masks = torch.as_tensor(np.array(masks, dtype=bool).reshape(-1, height, width))
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bboxes"][t] for a in visible)]
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        instances.scores = torch.full((len(visible),), 0.9)
        instances.pred_classes = torch.tensor([a["category_id"] for a in visible],
                                              dtype=torch.int64)
        return [{"instances": instances}]


def video_cfg(name, tmp_path):
    return load_config(CONFIG, ["DATASETS.TRAIN", "()", "DATASETS.TEST", f"('{name}',)",
                                "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu"])


def test_evaluation_of_tracked_ground_truth(videos, tmp_path):
    """Ground-truth masks through the tracker: every track kept whole, so AP 100 and no ID
    switch; the official result file is written."""
    cfg = video_cfg(videos, tmp_path)
    results = Trainer.test(cfg, GroundTruthModel(videos))
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["tracking"]["IDSW"] == 0
    assert results["tracking"]["IDF1"] == pytest.approx(100.0)
    written = json.loads((tmp_path / "inference" / videos / "results.json").read_text())
    assert {r["video_id"] for r in written} == {1, 2, 3}
    assert all(len(r["segmentations"]) == PARAMS.frames for r in written)


def test_frame_ap_scores_every_frames_detections_as_images(videos, tmp_path):
    """TEST.VIDEO_FRAME_AP: the model's own detections of every frame (before the tracker),
    scored on the "_frames" records: ground truth gives frame AP 100."""
    cfg = video_cfg(videos, tmp_path)
    cfg.defrost()
    cfg.TEST.VIDEO_FRAME_AP = True
    results = Trainer.test(cfg, GroundTruthModel(videos))
    assert results["frame_segm"]["AP"] == pytest.approx(100.0)
    assert results["frame_bbox"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP"] == pytest.approx(100.0)


def test_recorded_detections_replay_through_the_same_evaluation(videos, tmp_path):
    """tools/track_sweep.py's path: detections recorded once (saved and read back as tensors
    only), replayed through each tracker setting, scored as Trainer.test scores the model."""
    cfg = video_cfg(videos, tmp_path)
    path = tmp_path / "detections.pt"
    save_detections(record_detections(cfg, GroundTruthModel(videos), videos), path)
    records = load_detections(path)
    replayed = evaluate_tracker(cfg, records, videos)
    direct = Trainer.test(cfg, GroundTruthModel(videos))
    for task in ("segm", "tracking"):
        assert replayed[task] == pytest.approx(direct[task], nan_ok=True)
    assert replayed["segm"]["AP"] == pytest.approx(100.0)
    cfg.defrost()
    cfg.MODEL.TRACKER.SCORE_THRESH = 0.95  # the replay follows the setting: every detection
    # (0.9) dropped, nothing tracked
    assert evaluate_tracker(cfg, records, videos)["segm"]["AP"] == 0


@pytest.mark.slow
def test_track_sweep_tool_ablation_on_recorded_detections(videos, tmp_path):
    """tools/track_sweep.py --ablation: one row per rule off, each scored like Trainer.test; the
    JSON names the commit, the machine and each row's changed keys."""
    path = tmp_path / "detections.pt"
    save_detections(record_detections(video_cfg(videos, tmp_path), GroundTruthModel(videos),
                                       videos), path)
    metadata = MetadataCatalog.get(videos)
    result = subprocess.run(
        [sys.executable, "tools/track_sweep.py", "--config-file", CONFIG,
         "--dataset", "sweep_videos", "--detections", str(path), "--ablation", "--json", str(tmp_path / "sweep.json"),
         "DATASETS.REGISTER_VIDEO",
         f"['sweep_videos={metadata.json_file},{metadata.image_root}']"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "sweep.json").read_text())
    assert {"commit", "machine", "tracker", "rows"} <= set(report)
    rows = {row["setting"]: row for row in report["rows"]}
    assert rows["all rules (defaults)"]["results"]["segm"]["AP"] == pytest.approx(100.0)
    assert rows["no motion prior"]["overrides"] == ["MODEL.TRACKER.MOTION none"]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == len(report["rows"]) + 1  # the header and one line per row


class GroundTruthBoxModel(GroundTruthModel):
    """``GroundTruthModel`` without masks, as a box-only detector (FCOS) gives its instances."""

    def forward(self, batched_inputs):
        (outputs,) = super().forward(batched_inputs)
        instances = outputs["instances"]
        return [{"instances": Instances(instances.image_size, **{
            k: v for k, v in instances.get_fields().items() if k != "pred_masks"})}]


def test_box_only_model_gives_box_track_metrics(videos, tmp_path):
    """A model without masks is tracked on its boxes and scored on box tracks ("bbox"): the
    ground-truth boxes give AP 100 and no ID switch; the result file holds per-frame boxes.
    The boxes of crossing shapes overlap far more than their masks, so that the tracker keeps
    the ground truth's identities here only with strict classes and no duplicate rule (with the
    defaults: AP 79, 2 ID switches)."""
    cfg = video_cfg(videos, tmp_path)
    cfg.defrost()
    cfg.MODEL.TRACKER.DUPLICATE_IOU = 1.0
    cfg.MODEL.TRACKER.CLASS_MISMATCH_COST = 1e6
    results = Trainer.test(cfg, GroundTruthBoxModel(videos))
    assert "segm" not in results
    assert results["bbox"]["AP"] == pytest.approx(100.0)
    assert results["tracking"]["IDSW"] == 0
    assert results["tracking"]["IDF1"] == pytest.approx(100.0)
    written = json.loads((tmp_path / "inference" / videos / "results.json").read_text())
    assert all(len(r["bboxes"]) == PARAMS.frames and "segmentations" not in r for r in written)
    shifted = GroundTruthBoxModel(videos)  # each box 40% of its width to the right: IoU 0.43
    for height, width, visible, t in shifted.frames.values():
        for annotation in visible:
            x, y, w, h = annotation["bboxes"][t]
            annotation["bboxes"][t] = [x + 0.4 * w, y, w, h]
    worse = Trainer.test(cfg, shifted)
    assert worse["bbox"]["AP50"] == 0 and worse["bbox"]["AP"] == 0


def test_evaluation_with_a_video_clip_training_mapper(videos, tmp_path):
    """A config training on clips (``INPUT.DATASET_MAPPER VideoClipMapper``) evaluates: the test
    loaders and video evaluation get the frame mapper, not the clip mapper (which indexed a
    frame record's "length": KeyError)."""
    cfg = video_cfg(videos, tmp_path)
    cfg.defrost()
    cfg.INPUT.DATASET_MAPPER = "VideoClipMapper"
    model = build_model(cfg)
    results = Trainer.test(cfg, model)
    assert set(results) == {"segm", "tracking", "speed"}
    assert isinstance(build_dataset_mapper(cfg, is_train=True), VideoClipMapper)
    assert isinstance(build_dataset_mapper(cfg, is_train=False), RobustDatasetMapper)
    cfg.INPUT.TEST_DATASET_MAPPER = "NoSuchMapper"
    with pytest.raises(ConfigError, match="INPUT.TEST_DATASET_MAPPER: no dataset mapper "
                                          "'NoSuchMapper'"):
        build_dataset_mapper(cfg, is_train=False)


@pytest.mark.slow
def test_train_net_evaluates_fcos_on_video_with_a_clip_mapper(tmp_path):
    """``train_net.py --eval-only`` of the box-only FCOS on the embedded video split, with the
    training mapper set to ``VideoClipMapper``: box-track AP and identity metrics. Untrained,
    its scores are about its prior 0.01: every threshold is 0, its 10 best boxes tracked."""
    run_train_net(FCOS_CONFIG, "--eval-only", "DATASETS.TEST", "('shapes_video_val',)",
                  "INPUT.DATASET_MAPPER", "VideoClipMapper", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
                  "MODEL.FCOS.POST_NMS_TOPK_TEST", "10", "MODEL.TRACKER.SCORE_THRESH", "0.0",
                  "MODEL.TRACKER.HIGH_SCORE_THRESH", "0.0", "MODEL.TRACKER.BIRTH_SCORE_THRESH",
                  "0.0", "OUTPUT_DIR", str(tmp_path))
    log = (tmp_path / "log.txt").read_text()
    assert "Evaluation results for bbox of shapes_video_val" in log
    assert "Evaluation results for tracking of shapes_video_val" in log
    written = json.loads((tmp_path / "inference" / "shapes_video_val" / "results.json")
                         .read_text())
    assert written and all(len(r["bboxes"]) == 24 for r in written)


def test_evaluation_of_an_untrained_model(videos, tmp_path):
    """An untrained BlendMask (random heads) through the same path: a valid, low score."""
    cfg = video_cfg(videos, tmp_path)
    cfg.MODEL.MOBILENET_V2.PRETRAINED = False
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    model = Trainer.build_model(cfg)
    results = Trainer.test(cfg, model)
    assert 0 <= results["segm"]["AP"] < 5
    assert set(results["tracking"]) >= {"IDF1", "IDSW", "MOTA", "HOTA"}


def test_video_predictor_gives_ids_and_times(videos):
    cfg = video_cfg(videos, ".")
    model = GroundTruthModel(videos)

    class FramePredictor:  # Predictor's interface over the ground-truth model, by frame order
        def __init__(self):
            self.cfg, self.model, self.files = cfg, model, iter(model.frames)

        def model_inputs(self, image):
            return {"file_name": next(self.files)}

    predictor = VideoPredictor(cfg, FramePredictor())
    first_video = DatasetCatalog.get(videos)[0]
    outputs = list(predictor.run(np.zeros((1, 1, 3), np.uint8) for _ in first_video["file_names"]))
    assert len(outputs) == PARAMS.frames and predictor.frames == PARAMS.frames
    ids = set()
    for out in outputs:
        ids.update(out["instances"].pred_ids.tolist())
    assert ids == set(range(1, len(first_video["annotations"]) + 1))
    assert predictor.model_seconds > 0 and predictor.association_seconds > 0


def test_demo_draws_a_track_in_one_colour():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import demo
    finally:
        sys.path.pop(0)
    instances = Instances((40, 80))
    masks = torch.zeros(2, 40, 80, dtype=torch.bool)
    masks[0, 5:15, 5:15] = masks[1, 20:30, 50:60] = True
    instances.pred_masks = masks
    instances.pred_boxes = Boxes(torch.tensor([[5.0, 5, 15, 15], [50, 20, 60, 30]]))
    instances.scores = torch.tensor([0.9, 0.8])
    instances.pred_classes = torch.tensor([0, 1])
    instances.pred_ids = torch.tensor([3, 4])
    frame = np.full((40, 80, 3), 128, np.uint8)
    drawn = demo.draw_tracks(frame, instances, MetadataCatalog.get("shapes_val"))
    moved = instances[[0]]
    moved.pred_masks = masks[1:]  # track 3 elsewhere in the next frame
    moved.pred_boxes = Boxes(torch.tensor([[50.0, 20, 60, 30]]))
    later = demo.draw_tracks(frame, moved, MetadataCatalog.get("shapes_val"))
    first_3, first_4, later_3 = drawn[10, 10], drawn[25, 55], later[25, 55]
    assert np.abs(first_3.astype(int) - later_3.astype(int)).max() <= 2  # same colour
    assert np.abs(first_3.astype(int) - first_4.astype(int)).max() > 20  # another track's


def test_benchmark_video_rows():
    cfg = tiny_fcos_cfg()
    spec = ModelSpec("tiny", "tiny", cfg)
    report = run_benchmark([spec], random_images(2, 96, 128),
                           BenchmarkSettings(input_size="96", max_size=160, warmup=1, iters=2,
                                             num_detections=(5,), video=True))
    image, video = report["models"]
    assert (image["video"], video["video"]) == (False, True)
    assert video["label"] == "tiny [video]"
    assert image["detections_mean"] == 5  # the tracker drops only duplicates of one object
    assert 0 < video["detections_mean"] <= image["detections_mean"]
    assert video["module_median_ms"]["association"] > 0
