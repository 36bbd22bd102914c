"""A method joins rtinst as a project does, without any file of rtinst changing: a package
written into a temporary ``projects/Toy/toymethod/`` declares itself in the entry-point group
``rtinst.methods`` and calls ``rtinst.register_method`` (a config key, a meta-architecture, a
detection family); once installed, ``get_cfg()``, ``train_net.py``, ``tools/benchmark.py`` and
``tools/demo.py`` use it. The repository's setup.py declares a projects/ package the same way."""
import json
import os
import textwrap

import cv2
import numpy as np
import pytest
import torch

from plugin_projects import install_project
from plugin_projects import run as _run
from rtinst.methods import ENTRY_POINT_GROUP
from train_net_runner import ROOT

pytestmark = pytest.mark.slow

TOY_PACKAGE = '''
"""A toy detector: one box per cell of a stride-16 grid, scored by a 1x1 conv of the pooled
image, trained to score the cells holding a box centre."""
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import CfgNode as CN
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from rtinst import register_method
from rtinst.benchmark import DetectionFamily

STRIDE = 16


def add_toymethod_config(cfg):
    cfg.MODEL.TOY = CN()
    cfg.MODEL.TOY.TOPK = 5
    cfg.MODEL.TOY.SCORE_THRESH = 0.5


@META_ARCH_REGISTRY.register()
class ToyDetector(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.score = nn.Conv2d(3, 1, 1)
        self.topk, self.score_thresh = cfg.MODEL.TOY.TOPK, cfg.MODEL.TOY.SCORE_THRESH

    @property
    def device(self):
        return self.score.weight.device

    def forward(self, batched_inputs):
        logits = [self.score(F.avg_pool2d(x["image"].float()[None] / 255, STRIDE))[0, 0]
                  for x in batched_inputs]
        if self.training:
            losses = []
            for grid, x in zip(logits, batched_inputs):
                target = torch.zeros_like(grid)
                centres = x["instances"].gt_boxes.get_centers() // STRIDE
                target[centres[:, 1].long(), centres[:, 0].long()] = 1
                losses.append(F.binary_cross_entropy_with_logits(grid, target))
            return {"loss_toy": torch.stack(losses).mean()}
        results = []
        for grid, x in zip(logits, batched_inputs):
            scores, cells = grid.sigmoid().flatten().topk(min(self.topk, grid.numel()))
            keep = scores >= self.score_thresh
            scores, cells = scores[keep], cells[keep]
            input_height, input_width = x["image"].shape[1:]
            height, width = x.get("height", input_height), x.get("width", input_width)
            scale = torch.tensor([width / input_width, height / input_height] * 2)
            xs, ys = (cells % grid.shape[1]).float(), (cells // grid.shape[1]).float()
            boxes = torch.stack([xs, ys, xs + 1, ys + 1], dim=1) * STRIDE * scale
            instances = Instances((height, width), pred_boxes=Boxes(boxes), scores=scores,
                                  pred_classes=torch.zeros_like(cells))
            results.append({"instances": instances})
        return results


register_method(
    "toymethod",
    add_config=add_toymethod_config,
    detection_families={("MODEL.META_ARCHITECTURE", "ToyDetector"): DetectionFamily(
        score_thresholds=("MODEL.TOY.SCORE_THRESH",), max_detections=("MODEL.TOY.TOPK",))},
)
'''

K = 3


def _toy_dataset(folder):
    """Two 64x64 images with one bright square each, as a COCO-format dataset."""
    (folder / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, (x, y) in enumerate([(8, 8), (36, 20)]):
        pixels = np.full((64, 64, 3), 30, np.uint8)
        pixels[y:y + 20, x:x + 20] = 220
        cv2.imwrite(str(folder / "images" / f"{i}.png"), pixels)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 64, "width": 64})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                            "bbox": [x, y, 20, 20], "area": 400})
    categories = [{"id": 1, "name": "square"}]
    (folder / "toy.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return f"toy_train={folder / 'toy.json'},{folder / 'images'}"


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory):
    """(config file, environment with the installed toy method, dataset spec)."""
    root = tmp_path_factory.mktemp("toy")
    project, env = install_project(root, "Toy", "toymethod", TOY_PACKAGE)
    (project / "configs").mkdir()
    config = project / "configs" / "toy.yaml"
    config.write_text(textwrap.dedent(f"""\
        MODEL:
          META_ARCHITECTURE: "ToyDetector"
          DEVICE: "cpu"
          TOY:
            TOPK: {K}
        DATASETS:
          TRAIN: ("toy_train",)
          TEST: ("toy_train",)
        INPUT:
          MIN_SIZE_TRAIN: (64,)
          MAX_SIZE_TRAIN: 64
          MIN_SIZE_TEST: 64
          MAX_SIZE_TEST: 64
        DATALOADER:
          NUM_WORKERS: 0
        SOLVER:
          IMS_PER_BATCH: 2
          BASE_LR: 0.1
          MAX_ITER: 2
          STEPS: ()
          WARMUP_ITERS: 0
        TEST:
          EVAL_PERIOD: 0
        """))
    return config, env, _toy_dataset(root / "data")


def test_get_cfg_applies_the_installed_method(toy_project):
    _, env, _ = toy_project
    code = ("from rtinst.config import get_cfg; from rtinst.methods import METHODS; "
            "cfg = get_cfg(); print(cfg.MODEL.TOY.TOPK, sorted(METHODS))")
    result = _run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=1) == [
        "5", "['blendmask', 'blitzmask', 'centermask', 'mobileinst', 'rtinst', 'toymethod', "
        "'yolact']\n"]
    not_installed = _run(["-c", code], {**env, "PYTHONPATH": ""})
    assert "AttributeError: TOY" in not_installed.stderr  # the installation is what adds it


@pytest.fixture(scope="module")
def trained(toy_project, tmp_path_factory):
    """The toy's output folder after two iterations of train_net.py."""
    config, env, dataset = toy_project
    out = tmp_path_factory.mktemp("toy_run")
    result = _run(["train_net.py", "--config-file", config, "--dataset", dataset,
                   "OUTPUT_DIR", out], env)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_train_net_trains_and_evaluates_it(trained):
    metrics = [json.loads(line) for line in (trained / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in metrics if "total_loss" in m] == [1]  # its one loss
    assert "bbox/AP" in metrics[-1]  # the final evaluation, with the COCO evaluator
    state = torch.load(trained / "model_final.pth", weights_only=True)
    assert state["iteration"] == 1 and set(state["model"]) == {"score.weight", "score.bias"}


def test_benchmark_fixes_its_detection_count_through_its_family(toy_project, trained, tmp_path):
    config, env, _ = toy_project
    report_path = tmp_path / "report.json"
    result = _run(["tools/benchmark.py", "--config-file", config, "--baseline", "none",
                   "--weights", trained / "model_final.pth", "--input-size", "64",
                   "--num-images", "1", "--warmup", "0", "--iters", "1",
                   "--num-detections", str(K), "--json", report_path], env)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(report_path.read_text())["models"]
    assert row["meta_architecture"] == "ToyDetector"
    assert row["detection_families"] == ["ToyDetector"]
    assert row["detections_min"] == row["detections_max"] == K  # score threshold 0 from the family


def test_demo_draws_its_detections(toy_project, trained, tmp_path):
    config, env, _ = toy_project
    image = tmp_path / "square.png"
    pixels = np.full((64, 64, 3), 30, np.uint8)
    pixels[20:40, 20:40] = 220
    cv2.imwrite(str(image), pixels)
    result = _run(["tools/demo.py", "--config-file", config, "--input", image,
                   "--output", tmp_path / "drawn.png", "--confidence-threshold", "0.0",
                   "--opts", "MODEL.WEIGHTS", trained / "model_final.pth"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no registered test-time threshold" not in result.stderr  # its family was found
    drawn = cv2.imread(str(tmp_path / "drawn.png"))
    assert drawn.shape == (64, 64, 3) and not np.array_equal(drawn, pixels)  # boxes drawn


def test_the_repositorys_setup_declares_each_project_package(tmp_path):
    """setup.py, run on a copy of the repository's layout with projects/Toy/toymethod/, installs
    the package and writes its entry point beside the built-in methods'."""
    (tmp_path / "projects" / "Toy" / "toymethod").mkdir(parents=True)
    (tmp_path / "projects" / "Toy" / "toymethod" / "__init__.py").write_text("")
    (tmp_path / "setup.py").write_text((ROOT / "setup.py").read_text())
    result = _run(["setup.py", "-q", "egg_info", "--egg-base", tmp_path], os.environ, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = tmp_path / "rtinst.egg-info"
    entry_points = (info / "entry_points.txt").read_text().split()
    assert entry_points[0] == f"[{ENTRY_POINT_GROUP}]"
    packages = ["blendmask", "centermask", "blitzmask", "toymethod"]
    assert sorted(entry_points[1:]) == sorted(" ".join(f"{p} = {p}" for p in packages).split())
    assert "toymethod" in (info / "top_level.txt").read_text().split()
