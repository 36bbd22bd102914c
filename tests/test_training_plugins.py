"""Training parts a method plugs in through ``register_method`` without any shared edit: its LR
scheduler (SOLVER.LR_SCHEDULER_NAME), its hook (SOLVER.HOOKS) and its checkpoint converter
(by the model's class)."""
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.engine import HookBase
from torch import nn

from rtinst.checkpoint import SafeCheckpointer
from rtinst.config import add_rtinst_config
from rtinst.engine import Trainer
from rtinst.errors import CheckpointError, ConfigError
from rtinst.methods import METHODS, register_method


def build_probe_scheduler(cfg, optimizer):
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=cfg.SOLVER.GAMMA,
                                               total_iters=cfg.SOLVER.MAX_ITER)


class ProbeHook(HookBase):
    def __init__(self, cfg, trainer):
        self.built_with = (cfg, trainer)


class ProbeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)


class OtherNet(ProbeNet):
    """Same parameters, another class: no converter."""


def convert_probe_checkpoint(state_dict):
    """The other implementation's "fc.*" keys as ProbeNet's "linear.*"."""
    return {k.replace("fc.", "linear.", 1): v for k, v in state_dict.items()}


@pytest.fixture
def probe_method():
    """A method registered in-process for the test, removed after it."""
    saved = dict(METHODS)
    register_method(
        "training_plugins_probe",
        lr_schedulers={"ProbeConstantLR": build_probe_scheduler},
        training_hooks={"ProbeHook": ProbeHook},
        checkpoint_converters={"ProbeNet": convert_probe_checkpoint},
    )
    yield
    METHODS.clear()
    METHODS.update(saved)


def _cfg(tmp_path):
    cfg = d2_get_cfg()
    add_rtinst_config(cfg)
    cfg.OUTPUT_DIR = str(tmp_path)
    return cfg


def test_the_trainer_builds_the_scheduler_the_config_names(probe_method, tmp_path):
    cfg = _cfg(tmp_path)
    cfg.SOLVER.merge_from_list(["LR_SCHEDULER_NAME", "ProbeConstantLR", "BASE_LR", 0.02,
                                "GAMMA", 0.25])
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    assert isinstance(scheduler, torch.optim.lr_scheduler.ConstantLR)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    cfg.SOLVER.LR_SCHEDULER_NAME = "NoSuchLR"
    with pytest.raises(ConfigError, match=r"SOLVER.LR_SCHEDULER_NAME: no LR scheduler "
                                          r"'NoSuchLR'.*known: LookForward, ProbeConstantLR, "
                                          r"WarmupCosineLR, WarmupMultiStepLR"):
        Trainer.build_lr_scheduler(cfg, optimizer)


def _hooks(cfg, tmp_path):
    trainer = Trainer.__new__(Trainer)  # build_hooks' inputs only, no model or data
    trainer.cfg, trainer.max_iter = cfg, 10
    trainer.checkpointer = DetectionCheckpointer(nn.Linear(1, 1), str(tmp_path))
    return trainer, [h for h in trainer.build_hooks() if h is not None]


def test_the_trainer_appends_the_hooks_the_config_names(probe_method, tmp_path):
    cfg = _cfg(tmp_path)
    trainer, hook_list = _hooks(cfg, tmp_path)
    assert not any(isinstance(h, ProbeHook) for h in hook_list)
    cfg.SOLVER.HOOKS = ["ProbeHook", "ProbeHook"]
    trainer, with_probes = _hooks(cfg, tmp_path)
    assert [type(h) for h in with_probes] == [type(h) for h in hook_list] + [ProbeHook] * 2
    assert with_probes[-1].built_with == (cfg, trainer)
    cfg.SOLVER.HOOKS = ["NoSuchHook"]
    with pytest.raises(ConfigError, match=r"SOLVER.HOOKS: no training hook 'NoSuchHook'.*"
                                          r"known: ProbeHook"):
        _hooks(cfg, tmp_path)


def test_the_checkpointer_converts_checkpoints_for_the_models_class(probe_method, tmp_path):
    path = tmp_path / "other_implementation.pth"
    torch.save({"fc.weight": torch.tensor([[1.0, 2.0]]), "fc.bias": torch.tensor([3.0])}, path)
    model = ProbeNet()
    SafeCheckpointer(model).load(str(path))
    torch.testing.assert_close(model.linear.weight, torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(model.linear.bias, torch.tensor([3.0]))
    with pytest.raises(CheckpointError, match="matches none of the model's parameters"):
        SafeCheckpointer(OtherNet()).load(str(path))
