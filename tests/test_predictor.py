"""rtinst.engine.Predictor: DefaultPredictor's behaviour (bit for bit as built; to float rounding
optimised, the default on CPU) with weights that load safely and strictly, checked inputs and a
bounded output size; the README's snippet."""
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from rtinst.engine import Predictor
from rtinst.engine.predictor import (
    DEFAULT_MAX_OUTPUT_PIXELS,
    bounded_output_size,
    check_image,
    load_weights,
    optimizes_for_inference,
)
from rtinst.errors import CheckpointError
from payloads import code_running_pkl
from tiny_models import tiny_fcos_cfg

REPO = Path(__file__).resolve().parents[1]


def resnet18_checkpoint(folder):
    """A checkpoint of another model (torchvision's ResNet-18: no key in common)."""
    path = Path(folder) / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(cfg, weights file) of the tiny FCOS, its weights saved as training saves them."""
    torch.manual_seed(0)
    cfg = tiny_fcos_cfg()
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("weights") / "model.pth"
    torch.save({"model": model.state_dict(), "iteration": 9}, path)
    cfg.MODEL.WEIGHTS = str(path)
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # untrained scores: keep the top candidates
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 5
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 96, 128  # the test images' size
    return cfg, path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor(checkpoint[0])


def _image(height=96, width=128, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_as_built_same_outputs_as_default_predictor(checkpoint):
    cfg = checkpoint[0].clone()
    cfg.TEST.OPTIMIZE_FOR_INFERENCE = False  # as built: bit for bit DefaultPredictor's outputs
    predictor = Predictor(cfg)
    image = _image()
    ours = predictor(image)["instances"]
    theirs = DefaultPredictor(cfg)(image)["instances"]
    assert not predictor.optimized
    assert ours.image_size == theirs.image_size == (96, 128)
    assert len(ours) == len(theirs) > 0
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert torch.equal(ours.scores, theirs.scores)
    assert predictor.weights == f"file {cfg.MODEL.WEIGHTS}"


def test_default_on_cpu_runs_the_optimised_model_with_the_same_outputs(checkpoint, predictor):
    """By default, on CPU, the BatchNorms are folded: DefaultPredictor's outputs to rounding."""
    cfg, _ = checkpoint
    assert cfg.MODEL.DEVICE == "cpu" and predictor.optimized
    assert not any("BatchNorm" in type(m).__name__ for m in predictor.model.modules())
    image = _image()
    ours = predictor(image)["instances"]
    theirs = DefaultPredictor(cfg)(image)["instances"]
    assert len(ours) == len(theirs) > 0
    torch.testing.assert_close(ours.pred_boxes.tensor, theirs.pred_boxes.tensor,
                               rtol=0, atol=1e-3)
    torch.testing.assert_close(ours.scores, theirs.scores, rtol=0, atol=1e-5)
    assert torch.equal(ours.pred_classes, theirs.pred_classes)


def test_optimised_only_on_cpu():
    cfg = tiny_fcos_cfg()
    assert optimizes_for_inference(cfg)
    cfg.MODEL.DEVICE = "cuda:0"
    assert not optimizes_for_inference(cfg)  # on GPU the model runs as built
    cfg.MODEL.DEVICE, cfg.TEST.OPTIMIZE_FOR_INFERENCE = "cpu", False
    assert not optimizes_for_inference(cfg)


def test_calls_from_several_threads_agree(predictor):
    images = [_image(seed=i) for i in range(2)]
    expected = [predictor(image)["instances"].scores for image in images]
    results = [None] * len(images)

    def run(i):
        results[i] = predictor(images[i])["instances"].scores

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(a, b) for a, b in zip(results, expected))


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((32, 32, 3), np.nan, np.float32), "non-finite values"),
        (np.full((32, 32, 3), np.inf, np.float64), "non-finite values"),
        (np.zeros((32, 32, 3), np.float32), "must be uint8.*convert it"),
        (np.zeros((32, 32, 3), np.uint16), "uint16.*convert it"),
        (np.zeros((0, 0, 3), np.uint8), "empty: 0x0"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((32, 32), np.uint8), "convert it to 3 channels.*cv2.cvtColor"),
        (np.zeros((32, 32, 1), np.uint8), "convert it to 3 channels"),
        (np.zeros((32, 32, 4), np.uint8), "4 channels"),
        (np.zeros((2, 32, 32, 3), np.uint8), r"shape \(H, W, 3\)"),
        (torch.zeros(32, 32, 3, dtype=torch.uint8), "numpy array.*tensor"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_images_are_a_clear_value_error(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        check_image(image)
    with pytest.raises(ValueError, match=message):
        predictor(image)


def test_output_size_bound():
    assert bounded_output_size(6000, 8000, None) == (6000, 8000)
    assert bounded_output_size(1080, 1920, DEFAULT_MAX_OUTPUT_PIXELS) == (1080, 1920)
    h, w = bounded_output_size(6000, 8000, DEFAULT_MAX_OUTPUT_PIXELS)
    assert h * w <= DEFAULT_MAX_OUTPUT_PIXELS and abs(w / h - 8000 / 6000) < 0.01
    assert h * w > 0.99 * DEFAULT_MAX_OUTPUT_PIXELS
    assert bounded_output_size(1, 10**7, 100) == (1, 100)
    # 100 boolean masks at the default bound, and as many float maps, stay well under 2 GB
    assert 100 * DEFAULT_MAX_OUTPUT_PIXELS * (1 + 4) < 1.2e9


def test_big_image_gets_outputs_at_the_bounded_size_and_one_warning(checkpoint, caplog):
    cfg, _ = checkpoint
    predictor = Predictor(cfg, max_output_pixels=48 * 64)
    caplog.set_level(logging.WARNING, logger="rtinst.engine.predictor")
    for seed in range(2):
        out = predictor(_image(96, 128, seed))["instances"]
        assert out.image_size == (48, 64)
        boxes = out.pred_boxes.tensor
        assert (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
    warnings = [r.getMessage() for r in caplog.records if "max_output_pixels" in r.getMessage()]
    assert len(warnings) == 1 and "96x128" in warnings[0] and "48x64" in warnings[0]
    assert predictor(_image(40, 50))["instances"].image_size == (40, 50)  # small: unchanged
    with pytest.raises(ValueError, match="max_output_pixels"):
        Predictor(cfg, max_output_pixels=0)


def test_checkpoint_for_another_class_count_is_refused(checkpoint):
    cfg, path = checkpoint
    cfg = cfg.clone()
    cfg.MODEL.FCOS.NUM_CLASSES = 5  # the checkpoint's head has 3
    with pytest.raises(CheckpointError) as error:
        Predictor(cfg)
    message = str(error.value)
    assert str(path) in message and "other shapes" in message
    assert re.search(r"cls_logits\.weight \(checkpoint \(3, 64, 3, 3\), model \(5, 64, 3, 3\)\)",
                     message), message


def test_checkpoint_with_missing_keys_is_refused(checkpoint, tmp_path):
    cfg, path = checkpoint
    state = torch.load(path, weights_only=True)["model"]
    removed = sorted(k for k in state if "bbox_pred" in k)
    for key in removed:
        del state[key]
    partial = tmp_path / "partial.pth"
    torch.save({"model": state}, partial)
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS = str(partial)
    with pytest.raises(CheckpointError, match="not in the checkpoint") as error:
        Predictor(cfg)
    assert all(key in str(error.value) for key in removed)


def test_checkpoint_without_batchnorm_counters_loads(checkpoint, tmp_path):
    """``num_batches_tracked`` is unused at inference; checkpoints of older PyTorch lack it."""
    cfg, path = checkpoint
    model = build_model(cfg)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": state}, tmp_path / "no_counters.pth")
    assert load_weights(model, str(tmp_path / "no_counters.pth")).startswith("file")


def test_checkpoint_of_another_model_is_refused(checkpoint, tmp_path):
    cfg = checkpoint[0].clone()
    cfg.MODEL.WEIGHTS = str(resnet18_checkpoint(tmp_path))
    with pytest.raises(CheckpointError, match="resnet18.pth"):
        Predictor(cfg)


def test_pickle_that_runs_code_is_refused(checkpoint, tmp_path):
    cfg = checkpoint[0].clone()
    path, marker = code_running_pkl(tmp_path)
    cfg.MODEL.WEIGHTS = str(path)
    with pytest.raises(CheckpointError, match=r"evil\.pkl.*refusing"):
        Predictor(cfg)
    assert not marker.exists()


def test_missing_and_unfetchable_weights_are_errors(checkpoint, tmp_path):
    cfg = checkpoint[0].clone()
    cfg.MODEL.WEIGHTS = str(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="absent.pth"):
        Predictor(cfg)
    cfg.MODEL.WEIGHTS = "http://127.0.0.1:9/model_final.pth"  # nothing listens on port 9
    with pytest.raises(CheckpointError, match="cannot fetch.*127.0.0.1:9"):
        Predictor(cfg)


def test_empty_weights_warn_of_random_predictions(caplog):
    cfg = tiny_fcos_cfg()
    cfg.MODEL.WEIGHTS = ""
    caplog.set_level(logging.WARNING, logger="rtinst.engine.predictor")
    predictor = Predictor(cfg)
    assert predictor.weights == "random init"
    assert "random" in caplog.text and "MODEL.WEIGHTS is empty" in caplog.text


# A 6000x8000 photo through a tiny BlitzMask that always returns its top 100 peaks: full-resolution
# masks would take 100 x 48 MPixels x 1 byte (bool) = 4.8 GB, plus the float maps resized to them.
HUGE_IMAGE_SCRIPT = """
import resource, sys
import numpy as np
sys.path.insert(0, {tests!r})
import rtinst
from tiny_models import tiny_blitzmask_cfg

cfg = tiny_blitzmask_cfg("MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.0",
                         "MODEL.BLITZMASK.TEST.TOPK", "100")
{make_predictor}
predictor(np.zeros((64, 64, 3), np.uint8))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
image = np.random.default_rng(0).integers(0, 256, (6000, 8000, 3), dtype=np.uint8)
out = predictor(image)["instances"]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(len(out), *out.image_size, *out.pred_masks.shape[1:], before, after)
"""
MAKE_PREDICTOR = {
    "pytorch": "from rtinst.engine import Predictor\npredictor = Predictor(cfg)",
    "onnx": "from detectron2.modeling import build_model\n"
            "from rtinst.export import ONNXPredictor, export_onnx\n"
            "predictor = ONNXPredictor(export_onnx(build_model(cfg).eval(), {onnx!r}, 128, 128))",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MAKE_PREDICTOR))
def test_huge_image_memory_is_bounded(tmp_path, kind):
    make_predictor = MAKE_PREDICTOR[kind].format(onnx=str(tmp_path / "huge.onnx"))
    script = HUGE_IMAGE_SCRIPT.format(tests=str(REPO / "tests"), make_predictor=make_predictor)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    count, height, width, mask_h, mask_w, before, after = map(int, result.stdout.split())
    assert count == 100
    assert (height, width) == (mask_h, mask_w) and height * width <= DEFAULT_MAX_OUTPUT_PIXELS
    assert abs(width / height - 8000 / 6000) < 0.01
    assert "6000x8000" in result.stderr and "max_output_pixels" in result.stderr
    full_resolution_masks = 100 * 6000 * 8000  # bytes of the boolean masks alone
    assert after - before < 2e9 < full_resolution_masks / 2, (before, after)


def test_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    """The README's "From your own script" block, run in a folder holding the repository's configs
    and a checkpoint at the path it names."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("From your own script")
    snippet = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    assert "from rtinst.engine import Predictor" in snippet
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    weights_path = re.search(r'cfg.MODEL.WEIGHTS = "([^"]+)"', snippet).group(1)
    from rtinst.engine import load_config

    cfg = load_config(re.search(r'load_config\("([^"]+)"', snippet).group(1), ["MODEL.DEVICE", "cpu"])
    Path(weights_path).parent.mkdir(parents=True)
    torch.save({"model": build_model(cfg).state_dict()}, weights_path)
    namespace = {"bgr_image": _image(120, 160)}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["outputs"]["instances"].image_size == (120, 160)
