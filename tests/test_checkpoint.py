"""SafeCheckpointer: no code execution, clear errors for bad or mismatched checkpoints."""
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from rtinst.checkpoint import SafeCheckpointer
from rtinst.errors import CheckpointError


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pth_round_trip(tmp_path):
    src = _model()
    SafeCheckpointer(src, str(tmp_path)).save("m", iteration=7)
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    extra = SafeCheckpointer(dst, str(tmp_path)).load(str(tmp_path / "m.pth"))
    assert extra["iteration"] == 7
    for a, b in zip(src.state_dict().values(), dst.state_dict().values()):
        assert torch.equal(a, b)


def test_pkl_with_numpy_arrays_loads(tmp_path):
    src = _model()
    blobs = {k: v.numpy() for k, v in src.state_dict().items() if v.dtype == torch.float32}
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"model": blobs, "__author__": "test"}))
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    SafeCheckpointer(dst).load(str(path))
    np.testing.assert_array_equal(dst[0].weight.detach().numpy(), blobs["0.weight"])


@pytest.mark.parametrize("suffix", [".pkl", ".pth", ".pyth"])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, suffix, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps({"model": {"0.weight": _RunsCode()}, "__author__": "x"}))
    else:
        key = "model_state" if suffix == ".pyth" else "model"  # pycls's checkpoints
        torch.save({key: {"0.weight": _RunsCode()}}, path, _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match=f"evil{suffix}"):
        SafeCheckpointer(_model()).load(str(path))
    assert not (tmp_path / "PWNED").exists()


def test_missing_file_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth"):
        SafeCheckpointer(_model()).load(str(tmp_path / "nope.pth"))


def test_truncated_file_names_it(tmp_path):
    SafeCheckpointer(_model(), str(tmp_path)).save("m")
    data = (tmp_path / "m.pth").read_bytes()
    (tmp_path / "m.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.pth"):
        SafeCheckpointer(_model()).load(str(tmp_path / "m.pth"))


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    other = nn.Linear(5, 2)
    torch.save({"model": other.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: the checkpoint matches none of the model.s parameters"):
        SafeCheckpointer(_model()).load(str(tmp_path / "other.pth"))


def test_partially_matching_checkpoint_loads_what_fits(tmp_path):
    src = _model()
    state = src.state_dict()
    state["0.weight"] = torch.zeros(8, 3, 3, 3)  # wrong shape: skipped with a warning
    torch.save({"model": state}, tmp_path / "partial.pth")
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    before = dst[0].weight.detach().clone()
    SafeCheckpointer(dst).load(str(tmp_path / "partial.pth"))
    assert torch.equal(dst[0].weight, before)
    assert torch.equal(dst[0].bias, src[0].bias)


def test_unreachable_url_is_a_clear_error():
    with pytest.raises(CheckpointError, match="MODEL.WEIGHTS"):
        SafeCheckpointer(_model()).load("https://127.0.0.1:9/does-not-exist.pth")


def test_a_save_killed_midway_leaves_the_previous_checkpoint_and_tag(tmp_path, monkeypatch):
    model = _model()
    checkpointer = SafeCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    checkpointer.save("model_0000002", iteration=2)

    def killed_while_writing(data, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what the kill would leave: a partial write, nothing after it

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000002", iteration=3)  # overwrites a tagged file
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000003", iteration=3)
    monkeypatch.undo()

    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (tmp_path / "model_0000003.pth").exists()
    resumed = SafeCheckpointer(_model(), str(tmp_path)).resume_or_load("", resume=True)
    assert resumed["iteration"] == 2


def test_the_tag_is_replaced_whole(tmp_path, monkeypatch):
    checkpointer = SafeCheckpointer(_model(), str(tmp_path))
    checkpointer.tag_last_checkpoint("model_0000001.pth")
    replaced = []
    monkeypatch.setattr(os, "replace", lambda src, dst: replaced.append((src, dst)))
    checkpointer.tag_last_checkpoint("model_0000002.pth")  # "killed" before the rename
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert replaced == [(str(tmp_path / "last_checkpoint.tmp"), str(tmp_path / "last_checkpoint"))]


def test_an_empty_tag_is_a_clear_error(tmp_path):
    SafeCheckpointer(_model(), str(tmp_path)).save("model_0000001")
    (tmp_path / "last_checkpoint").write_text("")  # what an older, in-place save could leave
    with pytest.raises(CheckpointError, match="last_checkpoint is empty.*model_0000099.pth"):
        SafeCheckpointer(_model(), str(tmp_path)).resume_or_load("", resume=True)


def _frozen_model():
    """A conv and a FrozenBatchNorm2d holding 'ImageNet' statistics, and a head."""
    from detectron2.layers import FrozenBatchNorm2d

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), FrozenBatchNorm2d(4), nn.Conv2d(4, 2, 1))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    return model


def test_a_checkpoint_sharing_no_names_is_refused_despite_frozen_bn_filling(tmp_path):
    """FrozenBatchNorm2d fills absent statistics with 0 / 1, which used to count as loaded."""
    torch.save(torchvision_resnet18_state(), tmp_path / "resnet18.pth")
    model = _frozen_model()
    with pytest.raises(CheckpointError, match="resnet18.pth: the checkpoint matches none"):
        SafeCheckpointer(model).load(str(tmp_path / "resnet18.pth"))


def torchvision_resnet18_state():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.resnet18().state_dict()


def test_frozen_bn_statistics_absent_from_a_checkpoint_are_kept(tmp_path):
    model = _frozen_model()
    statistics = model[1].running_mean.clone(), model[1].running_var.clone()
    head = {f"2.{k}": torch.full_like(v, 0.5) for k, v in model[2].state_dict().items()}
    torch.save({"model": head}, tmp_path / "head.pth")
    SafeCheckpointer(model).load(str(tmp_path / "head.pth"))
    assert torch.equal(model[2].weight, head["2.weight"])
    assert torch.equal(model[1].running_mean, statistics[0])
    assert torch.equal(model[1].running_var, statistics[1])


def test_an_empty_file_says_so(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty.pth is empty \(0 bytes\)"):
        SafeCheckpointer(_model()).load(str(tmp_path / "empty.pth"))


def test_pycls_pyth_checkpoints_load(tmp_path):
    src = _model()
    torch.save({"model_state": src.state_dict(), "epoch": 3}, tmp_path / "net.pyth")
    dst = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    SafeCheckpointer(dst).load(str(tmp_path / "net.pyth"))
    assert torch.equal(dst[0].weight, src[0].weight)


def test_resume_without_a_checkpoint_warns_naming_the_folder(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="rtinst"):
        SafeCheckpointer(_model(), str(tmp_path)).resume_or_load("", resume=True)
    assert any(f"no checkpoint to resume from in {tmp_path}" in r.getMessage()
               and "random weights" in r.getMessage() for r in caplog.records)
