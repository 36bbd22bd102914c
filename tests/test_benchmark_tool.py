"""rtinst.benchmark and tools/benchmark.py on Detectron2 model-zoo models (random weights, CPU)."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from detectron2.modeling import build_model
from detectron2.structures import Instances

from rtinst.benchmark import (
    BenchmarkSettings,
    ModelSpec,
    TimedModel,
    fix_detection_count,
    measure_interleaved,
    random_images,
    resize_transform,
    resolve_weights,
    run_benchmark,
    set_score_threshold,
)
from rtinst.benchmark.model import build_eval_model
from rtinst.benchmark.report import add_baseline_ratios
from rtinst.config import get_cfg
from rtinst.engine import load_config
from rtinst.errors import CheckpointError, ConfigError
from payloads import code_running_pkl
from tiny_models import tiny_fcos_cfg

REPO = Path(__file__).resolve().parents[1]
RETINANET = "zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml"
MASK_RCNN = "zoo:COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
# an FCOS-family model: untrained, its head regresses empty boxes unless the benchmark opens them
CENTERMASK = str(REPO / "configs" / "CenterMask" / "MNV2_FPN_shapes.yaml")
K = 10
# command-line arguments of the smallest timed run: one image, no warm-up, one iteration
ONE_IMAGE_ONCE = ("--num-images", "1", "--warmup", "0", "--iters", "1")


@pytest.fixture(scope="module")
def report():
    images = random_images(2, 96, 128)
    specs = [
        ModelSpec("retinanet", RETINANET, load_config(RETINANET, device="cpu")),
        ModelSpec("mask_rcnn", MASK_RCNN, load_config(MASK_RCNN, device="cpu"), baseline=True),
        ModelSpec("centermask", CENTERMASK, load_config(CENTERMASK, device="cpu")),
    ]
    settings = BenchmarkSettings(input_size="128", warmup=1, iters=2, num_detections=(K,),
                                 time_modules=("roi_heads.mask_head",))
    return run_benchmark(specs, images, settings, image_source="test images")


def test_report_fields(report):
    assert {"date", "torch", "detectron2", "device", "device_name", "threads"} <= set(
        report["environment"]
    )
    assert report["settings"]["input_size"] == "128" and report["settings"]["num_images"] == 2
    retinanet, mask_rcnn, centermask = report["models"]
    assert [r["label"] for r in report["models"]] == ["retinanet", "mask_rcnn", "centermask"]
    assert mask_rcnn["baseline"] and not retinanet["baseline"]
    for row in report["models"]:
        assert len(row["times_ms"]) == 2
        assert row["p90_ms"] >= row["median_ms"] > 0
        assert row["params"] > 1e6 and row["weights"].startswith("random init")
        assert row["peak_memory_mb"] is None  # CUDA only
    assert "FCOS boxes opened" in centermask["weights"]
    json.dumps(report)  # JSON-ready


def test_submodule_time_is_reported_where_the_model_has_it(report):
    retinanet, mask_rcnn, _ = report["models"]
    assert retinanet["module_median_ms"] == {}
    mask_head_ms = mask_rcnn["module_median_ms"]["roi_heads.mask_head"]
    assert 0 < mask_head_ms < mask_rcnn["median_ms"]


def test_every_row_has_its_ratio_to_the_baseline(report):
    for row in report["models"]:
        assert set(row["ratio"]) == {"mask_rcnn"}


class _Sleeper:
    """A "model" that takes a known time per image and returns a known number of detections."""

    def __init__(self, seconds, detections):
        self.seconds, self.detections = seconds, detections

    def __call__(self, inputs):
        time.sleep(self.seconds)
        return [{"instances": Instances((1, 1), scores=torch.zeros(self.detections))}]


def test_models_with_known_latencies_get_their_ratio_and_throughput():
    fast = TimedModel(_Sleeper(0.02, 3), [{}])
    slow = TimedModel(_Sleeper(0.04, 5), [{}])
    measured = measure_interleaved([slow, fast], warmup=1, iters=5, device="cpu")
    rows = [dict(m.summary(), label=label, baseline=label == "fast", num_detections=None)
            for m, label in zip(measured, ["slow", "fast"])]
    add_baseline_ratios(rows)
    slow_row, fast_row = rows
    assert len(slow_row["times_ms"]) == 5 and min(slow_row["times_ms"]) >= 40
    assert slow_row["ratio"]["fast"] == pytest.approx(2.0, rel=0.25)
    assert fast_row["ratio"]["fast"] == 1.0
    assert slow_row["images_per_s"] == pytest.approx(25, rel=0.25)
    assert (slow_row["detections_min"], fast_row["detections_max"]) == (5, 3)


def test_fixed_detection_count_is_achieved(report):
    for row in report["models"]:
        assert row["num_detections"] == K
        assert row["detections_min"] == row["detections_max"] == K
        assert row["detections_achieved"] is True


def test_fix_detection_count_for_fcos():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.PROPOSAL_GENERATOR.NAME = "OneStageDetector", "FCOS"
    assert fix_detection_count(cfg, 2000) == ["FCOS"]
    fcos = cfg.MODEL.FCOS
    assert (
        fcos.INFERENCE_TH_TEST,
        fcos.POST_NMS_TOPK_TEST,
        fcos.PRE_NMS_TOPK_TEST,
        fcos.NMS_TH,
    ) == (0.0, 2000, 2000, 1.0)


def test_fix_detection_count_rejects_unknown_models():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    with pytest.raises(ValueError, match="detection_families"):
        fix_detection_count(cfg, 10)


def test_config_errors_name_the_problem(tmp_path):
    orphan = tmp_path / "orphan.yaml"
    orphan.write_text('_BASE_: "missing-base.yaml"\n')
    with pytest.raises(ConfigError, match="orphan.yaml.*missing-base.yaml"):
        load_config(str(orphan))
    with pytest.raises(ConfigError, match="config file not found.*absent.yaml"):
        load_config(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="FOO.BAR"):
        load_config(RETINANET, ["FOO.BAR", "1"])
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config("zoo:missing.yaml")


def test_unavailable_weights_are_ignored():
    cfg = load_config(RETINANET)
    assert "not a local file" in resolve_weights(cfg) and cfg.MODEL.WEIGHTS == ""


def test_input_sizes():
    image = np.zeros((480, 640, 3), np.uint8)
    assert resize_transform("128", 160).get_transform(image).apply_image(image).shape == (
        120,
        160,
        3,
    )
    assert resize_transform("64x96", 1333).get_transform(image).apply_image(image).shape == (
        64,
        96,
        3,
    )
    with pytest.raises(ValueError):
        resize_transform("big", 1333)


@pytest.mark.slow
def test_cli_writes_json_and_markdown(tmp_path):
    json_path, md_path = tmp_path / "out.json", tmp_path / "out.md"
    command = [
        sys.executable,
        "tools/benchmark.py",
        "--baseline",
        "retinanet",
        "--config-file",
        RETINANET,
        "--input-size",
        "96",
        *ONE_IMAGE_ONCE,
        "--num-detections",
        "5",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--json",
        str(json_path),
        "--markdown",
        str(md_path),
        "--opts",
        "MODEL.RETINANET.NUM_CONVS",
        "2",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(json_path.read_text())
    baseline, model = report["models"]
    assert (baseline["label"], model["label"]) == (
        "retinanet",
        "COCO-Detection/retinanet_R_50_FPN_1x",
    )
    assert model["params"] < baseline["params"]  # --opts reached the config, not the baseline
    assert set(model["ratio"]) == {"retinanet"}
    assert model["detections_achieved"] and baseline["detections_achieved"]
    assert report["environment"]["threads"] == 1 and report["settings"]["device"] == "cpu"
    markdown = md_path.read_text()
    assert (
        "| model | K |" in markdown
        and "× retinanet" in markdown
        and "COCO-Detection/retinanet_R_50_FPN_1x" in markdown
    )
    assert "| model | K |" in result.stdout
    assert (tmp_path / "out.png").stat().st_size > 1000  # the latency plot beside the JSON
    assert "not a local file" in result.stderr  # the weights each model used are logged


BLITZMASK = "configs/BlitzMask/MNV2_shapes.yaml"
SHAPES_MASK_RCNN = "configs/Mask-RCNN/MNV2_FPN_shapes.yaml"  # GeneralizedRCNN: no export pipeline
# BlitzMask's mask branch: the Spanning Set branch and Eq. 1's assembly (the Coefficients run at
# the peaks only, inside the head)
MASK_BRANCH = ["head.spanning_set", "masks"]


def test_fix_detection_count_for_blitzmask():
    cfg = load_config(BLITZMASK)
    assert fix_detection_count(cfg, 10) == ["BlitzMask"]
    assert (cfg.MODEL.BLITZMASK.TEST.SCORE_THRESH, cfg.MODEL.BLITZMASK.TEST.TOPK) == (0.0, 10)


@pytest.fixture(scope="module")
def onnx_cli(tmp_path_factory):
    """tools/benchmark.py --onnx(-int8) --flops --time-modules on a small BlitzMask (exportable),
    Detectron2's Mask R-CNN (not exportable) and CenterMask (the baseline: baselines are not
    exported): (process result, JSON report, Markdown)."""
    folder = tmp_path_factory.mktemp("onnx_benchmark")
    json_path, md_path = folder / "out.json", folder / "out.md"
    command = [
        sys.executable,
        "tools/benchmark.py",
        "--config-file",
        BLITZMASK,
        SHAPES_MASK_RCNN,
        "--baseline",
        CENTERMASK,
        "--input-size",
        "64x64",
        *ONE_IMAGE_ONCE,
        "--num-detections",
        str(K),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--onnx",
        "--onnx-int8",
        "dynamic",
        "--flops",
        "--time-modules",
        *MASK_BRANCH,
        "--json",
        str(json_path),
        "--markdown",
        str(md_path),
        "--opts",
        "MODEL.SEPARABLE_FPN.OUT_CHANNELS",
        "32",
        "MODEL.BLITZMASK.HEAD_CHANNELS",
        "32",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result, json.loads(json_path.read_text()), md_path.read_text()


@pytest.mark.slow
def test_onnx_runtime_row_is_measured_with_the_others(onnx_cli):
    _, report, markdown = onnx_cli
    rows = {row["label"]: row for row in report["models"]}
    assert list(rows) == [
        "CenterMask/MNV2_FPN_shapes",
        "BlitzMask/MNV2_shapes",
        "BlitzMask/MNV2_shapes [onnxruntime]",
        "BlitzMask/MNV2_shapes [onnxruntime int8]",
        "Mask-RCNN/MNV2_FPN_shapes",
    ]
    pytorch, onnx = rows["BlitzMask/MNV2_shapes"], rows["BlitzMask/MNV2_shapes [onnxruntime]"]
    int8 = rows["BlitzMask/MNV2_shapes [onnxruntime int8]"]
    baseline = rows["CenterMask/MNV2_FPN_shapes"]
    assert pytorch["runtime"] == "pytorch" and onnx["runtime"] == int8["runtime"] == "onnxruntime"
    assert (pytorch["quantization"], onnx["quantization"], int8["quantization"]) == (
        None,
        None,
        "dynamic",
    )
    assert onnx["meta_architecture"] == "BlitzMask" and not onnx["baseline"]
    # PyTorch timed as the Predictor runs it on CPU (TEST.OPTIMIZE_FOR_INFERENCE), the model as
    # built exported
    assert pytorch["optimized_for_inference"] and not onnx["optimized_for_inference"]
    assert onnx["params"] == pytorch["params"] and onnx["gflops"] is None
    for row in (pytorch, onnx, int8):  # top-K heatmap peaks at score threshold 0: always K
        assert row["num_detections"] == K
        assert row["detections_min"] == row["detections_max"] == K
        assert row["detections_achieved"] is True
        assert len(row["times_ms"]) == 1 and row["median_ms"] > 0
    assert set(onnx["ratio"]) == {baseline["label"]}
    assert "| BlitzMask/MNV2_shapes [onnxruntime] | 10 |" in markdown


@pytest.mark.slow
def test_models_that_cannot_be_exported_get_no_onnx_row(onnx_cli):
    result, report, _ = onnx_cli
    assert [row["runtime"] for row in report["models"] if "BlitzMask" not in row["label"]] == [
        "pytorch",
        "pytorch",
    ]
    assert "Mask-RCNN/MNV2_FPN_shapes: no ONNX Runtime entry" in result.stderr


@pytest.mark.slow
def test_mask_branch_flops_are_counted_per_module(onnx_cli):
    _, report, markdown = onnx_cli
    pytorch = report["models"][1]
    module_gflops = pytorch["module_gflops"]
    assert set(module_gflops) == set(MASK_BRANCH)
    for name in MASK_BRANCH:
        assert 0 < module_gflops[name] < pytorch["gflops"]
    assert sum(module_gflops.values()) < pytorch["gflops"]
    assert set(pytorch["module_median_ms"]) == set(MASK_BRANCH)
    assert "| masks ms | masks GFLOPs |" in markdown


def test_onnx_needs_a_fixed_input_size(capsys):
    spec = importlib.util.spec_from_file_location("benchmark_tool", REPO / "tools/benchmark.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    arguments = ["--config-file", BLITZMASK, "--baseline", "none", "--onnx", "--input-size"]
    assert tool.parse_args([*arguments, "64x96"]).onnx
    for size in ("320", "320x"):
        with pytest.raises(SystemExit) as exit_info:
            tool.parse_args([*arguments, size])
        assert exit_info.value.code == 2
    assert "--onnx needs a fixed --input-size HxW" in capsys.readouterr().err


def _benchmark_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", REPO / "tools/benchmark.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_weights_load_safely_and_must_fit_the_model(tmp_path):
    cfg = tiny_fcos_cfg()
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "fits.pth")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    evil, marker = code_running_pkl(tmp_path)
    cfg.MODEL.WEIGHTS = str(tmp_path / "fits.pth")
    assert build_eval_model(cfg.clone(), None)[1] == f"file {tmp_path / 'fits.pth'}"
    for weights, message in [(evil, "evil.pkl"), (tmp_path / "resnet18.pth", "resnet18.pth")]:
        cfg.MODEL.WEIGHTS = str(weights)
        with pytest.raises(CheckpointError, match=message):
            build_eval_model(cfg.clone(), None)
    assert not marker.exists()
    cfg.MODEL.WEIGHTS, cfg.MODEL.FCOS.NUM_CLASSES = str(tmp_path / "fits.pth"), 5
    with pytest.raises(CheckpointError, match="other shapes.*cls_logits"):
        build_eval_model(cfg.clone(), None)


def test_weights_option_needs_existing_files(tmp_path, capsys):
    arguments = ["--config-file", CENTERMASK, "--baseline", "none", "--weights"]
    assert _benchmark_tool().parse_args([*arguments, "-"]).weights == ["-"]
    with pytest.raises(SystemExit) as exit_info:
        _benchmark_tool().parse_args([*arguments, str(tmp_path / "missing.pth")])
    assert exit_info.value.code == 2
    assert "--weights: not a file" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_refuses_a_pickle_that_runs_code(tmp_path):
    evil, marker = code_running_pkl(tmp_path)
    command = [sys.executable, "tools/benchmark.py", "--config-file", CENTERMASK, "--weights",
               str(evil), "--baseline", "none", "--input-size", "64", *ONE_IMAGE_ONCE,
               "--device", "cpu", "--json", str(tmp_path / "out.json")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "benchmark.py: error:" in result.stderr and "evil.pkl" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out.json").exists()


def test_the_demo_threshold_never_raises_a_models_candidate_threshold():
    """FCOS thresholds the class probability before its score multiplies in the centerness: at
    0.5 it dropped detections scored 0.51 (the demo found 0 where 0.3 showed two above 0.5)."""
    cfg = tiny_fcos_cfg()
    assert cfg.MODEL.FCOS.INFERENCE_TH_TEST == 0.05
    assert set_score_threshold(cfg, 0.5) == ["FCOS"]
    assert cfg.MODEL.FCOS.INFERENCE_TH_TEST == 0.05
    set_score_threshold(cfg, 0.01)
    assert cfg.MODEL.FCOS.INFERENCE_TH_TEST == 0.01


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_onnx_profile_times_the_pipeline_against_its_bottom_up_and_splits_the_profile(tmp_path):
    """tools/onnx_profile.py on a small BlitzMask at 64x64 with 3 detections: the pipeline and
    the floor timed, their profiles summed by op and by part (the same total either way)."""
    report_path = tmp_path / "profile.json"
    code = _tool("onnx_profile").main([
        "--config-file", BLITZMASK, "--size", "64", "64", "--num-detections", "3",
        "--iters", "2", "--profile-iters", "1", "--json", str(report_path),
        "--opts", "MODEL.SEPARABLE_FPN.OUT_CHANNELS", "16", "MODEL.BLITZMASK.HEAD_CHANNELS", "16"])
    assert code == 0
    report = json.loads(report_path.read_text())
    labels = ["pipeline, 3 detections", "bottom-up alone"]
    assert list(report["median_ms"]) == labels and report["ratio_to_floor"][labels[1]] == 1.0
    assert report["ratio_to_floor"][labels[0]] > 1.0  # the pipeline contains the floor
    pipeline = report["profile"][labels[0]]
    assert {"backbone.bottom_up", "backbone", "heatmap", "spanning_set", "masks",
            "(pipeline)"} <= set(pipeline["by_part"])
    assert {"Conv", "TopK", "MaxPool", "MatMul"} <= set(pipeline["by_op"])
    by_op, by_part = (sum(ms for ms, _ in table.values()) for table in pipeline.values())
    assert abs(by_op - by_part) < 1e-2 * by_op
    assert report["machine"]["cores"] >= 1 and "onnxruntime" in report
