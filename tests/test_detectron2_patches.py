"""The patches that ``third_party/detectron2_py/build_wheel.py`` applies to detectron2 v0.6."""
import importlib.util
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data.build import load_proposals_into_dataset
from detectron2.engine.hooks import LRScheduler
from detectron2.utils import safe_pickle
from payloads import CreatesFile


def _dump(obj, path, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)


# --------------------------------------------------------------------------- detectron2.export
def test_export_imports_and_traces_without_caffe2():
    from detectron2.export import TracingAdapter

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    x = torch.randn(1, 3, 8, 8)
    adapter = TracingAdapter(model, x)
    traced = torch.jit.trace(adapter, adapter.flattened_inputs)
    torch.testing.assert_close(traced(x)[0], model(x))


def test_flop_count_analysis_counts_a_conv():
    from detectron2.utils.analysis import FlopCountAnalysis

    conv = nn.Conv2d(3, 8, 3, bias=False)
    flops = FlopCountAnalysis(conv, torch.randn(1, 3, 8, 8))
    assert flops.total() == 8 * 6 * 6 * 3 * 3 * 3  # multiply-adds: Cout * Hout * Wout * Cin * k^2


@pytest.mark.skipif(importlib.util.find_spec("caffe2") is not None, reason="caffe2 is installed")
def test_caffe2_exporter_names_caffe2_when_used():
    import detectron2.export

    with pytest.raises(ImportError, match="caffe2"):
        detectron2.export.Caffe2Tracer
    assert "Caffe2Tracer" not in detectron2.export.__all__


# --------------------------------------------------------------------------- LRScheduler hook
def _step_lr(lr=1.0):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)


def test_lr_scheduler_hook_round_trips_a_step_lr():
    optimizer, scheduler = _step_lr()
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    state = LRScheduler(optimizer, scheduler).state_dict()
    assert state["last_epoch"] == 3

    optimizer2, scheduler2 = _step_lr()
    optimizer2.load_state_dict(optimizer.state_dict())
    LRScheduler(optimizer2, scheduler2).load_state_dict(state)
    assert scheduler2.last_epoch == 3
    assert scheduler2.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    for _ in range(3):  # the schedule goes on: x0.1 at epoch 4, not at epoch 2 again
        scheduler.step()
        scheduler2.step()
        assert optimizer2.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(0.001)  # epoch 6


# --------------------------------------------------------------------------- safe unpickling
def test_safe_pickle_refuses_a_callable_and_names_it(tmp_path):
    target = tmp_path / "created.txt"
    data = pickle.dumps({"x": CreatesFile(target)})
    with pytest.raises(pickle.UnpicklingError, match=r"io\.open"):
        safe_pickle.loads(data)
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_safe_pickle_rebuilds_arrays_and_containers(protocol):
    from collections import OrderedDict

    obj = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "s": np.float64(2.5),
        "t": (1, "x", b"raw"),
        "o": OrderedDict(k=[1, 2]),
        "set": {3, 4},
    }
    back = safe_pickle.loads(pickle.dumps(obj, protocol=protocol), encoding="latin1")
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["a"].dtype == np.float32
    assert back["s"] == 2.5 and back["t"] == (1, "x", b"raw")
    assert back["o"] == obj["o"] and back["set"] == {3, 4}


def test_checkpointer_refuses_a_pkl_that_creates_a_file(tmp_path):
    target = tmp_path / "created.txt"
    path = _dump({"model": {"weight": CreatesFile(target)}, "__author__": "x"}, tmp_path / "m.pkl")
    with pytest.raises(pickle.UnpicklingError, match=r"io\.open"):
        DetectionCheckpointer(nn.Linear(2, 3)).load(path)
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_checkpointer_loads_a_pkl_of_arrays(tmp_path, protocol):
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    bias = np.array([1, 2, 3], dtype=np.float32)
    ckpt = {"model": {"weight": weight, "bias": bias}, "__author__": "x"}
    path = _dump(ckpt, tmp_path / "m.pkl", protocol)
    model = nn.Linear(2, 3)
    DetectionCheckpointer(model).load(path)
    np.testing.assert_array_equal(model.weight.detach().numpy(), weight)
    np.testing.assert_array_equal(model.bias.detach().numpy(), bias)


def _proposals(boxes):
    return {"ids": [7], "boxes": [boxes], "objectness_logits": [np.array([0.1, 0.9])]}


def test_proposal_file_that_creates_a_file_is_refused(tmp_path):
    target = tmp_path / "created.txt"
    path = _dump(_proposals(CreatesFile(target)), tmp_path / "proposals.pkl")
    with pytest.raises(pickle.UnpicklingError, match=r"io\.open"):
        load_proposals_into_dataset([{"image_id": 7}], path)
    assert not target.exists()


def test_proposal_file_of_arrays_loads(tmp_path):
    boxes = np.array([[0, 0, 1, 1], [2, 2, 4, 4]], dtype=np.float32)
    path = _dump(_proposals(boxes), tmp_path / "proposals.pkl")
    (record,) = load_proposals_into_dataset([{"image_id": 7}], path)
    np.testing.assert_array_equal(record["proposal_boxes"], boxes[::-1])  # by score, descending
    np.testing.assert_allclose(record["proposal_objectness_logits"], [0.9, 0.1])


# --------------------------------------------------------------------------- quiet start, logs
def test_box_transforms_stay_scripted_without_a_deprecation_warning():
    from detectron2.modeling.box_regression import Box2BoxTransform, Box2BoxTransformRotated

    for cls in (Box2BoxTransform, Box2BoxTransformRotated):
        assert torch.jit._state._get_script_class(cls) is not None
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import detectron2.modeling"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "torch.jit.script` is deprecated" not in run.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the warning is torch's on machines without a GPU")
def test_the_environment_table_starts_no_cuda_warning():
    code = "from detectron2.utils.collect_env import collect_env_info; print(collect_env_info())"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "GPU available" in run.stdout and "No CUDA runtime" not in run.stdout + run.stderr


def test_log_file_has_no_colour_codes(tmp_path):
    from termcolor import colored

    from detectron2.utils.logger import setup_logger

    logger = setup_logger(str(tmp_path), name="test_detectron2_patches_log", color=True)
    try:
        logger.warning(colored("a cyan table", "cyan"))
        for handler in logger.handlers:
            handler.flush()
        text = (tmp_path / "log.txt").read_text()
    finally:
        logger.handlers.clear()
    assert "a cyan table" in text
    assert "\x1b" not in text
