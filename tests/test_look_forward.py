"""BlitzMask's look-forward schedule (Sec. 2.3): phases, candidates, the look-forward itself on
toy regressions, the scheduler, the hook in Detectron2's training loop, config checks."""
import io
import itertools
import logging
import math

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.engine import AMPTrainer, SimpleTrainer, hooks
from detectron2.utils.events import get_event_storage
from torch import nn
from torch.nn import functional as F

from rtinst.config import add_rtinst_config
from rtinst.data import datasets, set_cache_dir
from rtinst.data import synthetic_shapes as shapes
from rtinst.engine import (
    LookForwardHook,
    LookForwardParams,
    LookForwardScheduler,
    Trainer,
    build_validation_batches,
    candidate_settings,
    look_forward,
    phase_at,
)
from rtinst.errors import ConfigError


def _cfg(**look_forward_keys):
    """Detectron2's + rtinst's defaults, a validation split named (not the test split),
    LOOK_FORWARD keys set."""
    cfg = d2_get_cfg()
    add_rtinst_config(cfg)
    cfg.DATASETS.TEST = ("test_set",)
    cfg.SOLVER.LOOK_FORWARD.VAL_DATASET = "val_set"
    for key, value in look_forward_keys.items():
        cfg.SOLVER.LOOK_FORWARD[key] = value
    return cfg


def _assert_candidates(actual, expected):
    assert len(actual) == len(expected), actual
    for (lr, momentum), (lr_expected, momentum_expected) in zip(actual, expected):
        assert lr == pytest.approx(lr_expected) and momentum == pytest.approx(momentum_expected)


# ----------------------------------------------------------------------------- phases, candidates


@pytest.mark.parametrize(
    "iteration, phase",
    [(0, "ascent"), (29, "ascent"), (30, "plateau"), (59, "plateau"), (60, "descent"),
     (99, "descent")],
)
def test_phase_boundaries(iteration, phase):
    assert phase_at(iteration, 100, 0.3, 0.6) == phase


def test_empty_phases_are_skipped():
    assert phase_at(0, 100, 0.0, 0.5) == "plateau"
    assert phase_at(10, 100, 0.2, 0.2) == "ascent"
    assert phase_at(20, 100, 0.2, 0.2) == "descent"


def test_ascent_candidates_are_the_product_in_order():
    params = LookForwardParams.from_config(_cfg())
    _assert_candidates(
        candidate_settings(0.5, 0.9, "ascent", params),
        [(0.5, 0.9), (0.5, 0.89), (0.625, 0.9), (0.625, 0.89), (0.75, 0.9), (0.75, 0.89)],
    )


def test_candidates_are_clamped_and_deduplicated():
    params = LookForwardParams.from_config(_cfg())
    # 0.9 x 1.25 and 0.9 x 1.5 clamp to 1.0; 0.85 - 0.01 clamps to MOMENTUM_MIN 0.85
    _assert_candidates(candidate_settings(0.9, 0.85, "ascent", params), [(0.9, 0.85), (1.0, 0.85)])
    # 0.9 + 0.01 clamps to SOLVER.MOMENTUM 0.9
    _assert_candidates(candidate_settings(1.0, 0.9, "descent", params), [(0.5, 0.9), (0.8, 0.9)])
    _assert_candidates(
        candidate_settings(1.0, 0.86, "descent", params),
        [(0.5, 0.86), (0.5, 0.87), (0.8, 0.86), (0.8, 0.87)],
    )
    _assert_candidates(candidate_settings(0.7, 0.88, "plateau", params), [(0.7, 0.88)])


def test_candidates_from_a_config():
    cfg = _cfg(ASCENT_LR_MULTIPLIERS=[1.0, 3.0], ASCENT_MOMENTUM_DELTAS=[0.0], MAX_LR_FACTOR=0.5)
    _assert_candidates(candidate_settings(0.1, 0.9, "ascent", cfg), [(0.1, 0.9), (0.3, 0.9)])
    _assert_candidates(candidate_settings(0.2, 0.9, "ascent", cfg), [(0.2, 0.9), (0.5, 0.9)])


# ----------------------------------------------------------------------------- look_forward

X_TRAIN = torch.linspace(-1, 1, 32).unsqueeze(1)
X_VAL = torch.linspace(-1, 1, 17).unsqueeze(1)


def _target(x):
    return 3 * x + 0.5


def _regression(model=None, base_lr=1.0, lr_factor=0.1, momentum=0.9):
    """(model, optimizer, scheduler, train_step, validation_loss) of a noise-free 1-D linear
    regression, weights starting at zero."""
    if model is None:
        model = nn.Linear(1, 1)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=momentum)
    scheduler = LookForwardScheduler(optimizer, lr_factor, momentum)

    def train_step():
        loss = F.mse_loss(model(X_TRAIN), _target(X_TRAIN))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def validation_loss():
        assert not torch.is_grad_enabled()
        return F.mse_loss(model(X_VAL), _target(X_VAL))

    return model, optimizer, scheduler, train_step, validation_loss


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same_state(model, snapshot):
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), key


def test_look_forward_picks_the_lr_that_lowers_the_validation_loss_and_restores_the_model():
    model, optimizer, scheduler, train_step, validation_loss = _regression()
    for _ in range(2):  # momentum buffers to restore
        train_step()
    weights = _snapshot(model)
    buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    with torch.no_grad():
        start_loss = float(validation_loss())
    tiny, good = (1e-5, 0.9), (0.1, 0.88)

    best, results = look_forward(
        model, optimizer, scheduler, train_step, validation_loss, [tiny, good], window=5
    )

    assert best == good
    assert [candidate for candidate, _ in results] == [tiny, good]
    (_, tiny_loss), (_, good_loss) = results
    assert tiny_loss == pytest.approx(start_loss, rel=1e-3)  # barely moved
    assert good_loss < 0.5 * tiny_loss
    _assert_same_state(model, weights)
    for p, buffer in zip(model.parameters(), buffers):
        assert torch.equal(optimizer.state[p]["momentum_buffer"], buffer)
    assert (scheduler.lr_factor, scheduler.momentum) == good
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(1.0 * 0.1) and group["momentum"] == 0.88


def test_look_forward_rejects_diverging_and_non_finite_lrs():
    model, optimizer, scheduler, train_step, validation_loss = _regression(momentum=0.0)
    weights = _snapshot(model)
    with torch.no_grad():
        start_loss = float(validation_loss())
    overflow, diverging, moderate = (1e30, 0.0), (3.0, 0.0), (0.1, 0.0)

    best, results = look_forward(
        model, optimizer, scheduler, train_step, validation_loss,
        [overflow, diverging, moderate], window=5,
    )

    losses = dict(results)
    assert best == moderate
    assert not math.isfinite(losses[overflow])
    assert losses[moderate] < 0.5 * start_loss and losses[diverging] > 100 * start_loss
    _assert_same_state(model, weights)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_look_forward_ties_go_to_the_first_candidate():
    model, optimizer, scheduler, train_step, _ = _regression()
    best, results = look_forward(
        model, optimizer, scheduler, train_step, lambda: 1.0, [(0.2, 0.9), (0.1, 0.9)], window=1
    )
    assert best == (0.2, 0.9) and [loss for _, loss in results] == [1.0, 1.0]


def test_look_forward_restores_batchnorm_statistics_and_rng():
    model = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    model, optimizer, scheduler, train_step, validation_loss = _regression(model)
    train_step()
    weights = _snapshot(model)
    first_draws = []

    def noisy_train_step():
        first_draws.append(torch.rand(1).item())
        train_step()

    torch.manual_seed(7)
    look_forward(
        model, optimizer, scheduler, noisy_train_step, validation_loss,
        [(0.1, 0.9), (0.05, 0.9)], window=1,
    )
    after = torch.rand(1).item()
    torch.manual_seed(7)
    expected = torch.rand(1).item()

    _assert_same_state(model, weights)  # incl. running_mean/var and num_batches_tracked
    assert first_draws == [expected, expected]  # every candidate starts from the same RNG
    assert after == expected  # and training's RNG stream is unchanged


# ----------------------------------------------------------------------------- scheduler


def _two_groups():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))
    return torch.optim.SGD(
        [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.02}], lr=0.1, momentum=0.9
    )


def test_scheduler_scales_each_group_and_keeps_hook_settings_across_steps():
    optimizer = _two_groups()
    scheduler = LookForwardScheduler(optimizer, 0.5, 0.9)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.01])
    scheduler.set_settings(0.3, 0.87)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.03, 0.006])
    assert [g["momentum"] for g in optimizer.param_groups] == [0.87, 0.87]
    assert scheduler.get_last_lr() == pytest.approx([0.03, 0.006])


def test_scheduler_state_round_trips_into_a_fresh_one():
    optimizer = _two_groups()
    scheduler = LookForwardScheduler(optimizer, 0.1, 0.9)
    scheduler.set_settings(0.45, 0.86)
    buffer = io.BytesIO()
    # what Detectron2's LRScheduler hook hands to the checkpointer
    torch.save(hooks.LRScheduler(optimizer, scheduler).state_dict(), buffer)
    buffer.seek(0)

    fresh_optimizer = _two_groups()
    fresh = LookForwardScheduler(fresh_optimizer, 0.1, 0.9)
    hooks.LRScheduler(fresh_optimizer, fresh).load_state_dict(torch.load(buffer))

    assert (fresh.lr_factor, fresh.momentum) == (0.45, 0.86)
    assert [g["lr"] for g in fresh_optimizer.param_groups] == pytest.approx([0.045, 0.009])
    assert [g["momentum"] for g in fresh_optimizer.param_groups] == [0.86, 0.86]
    fresh_optimizer.step()
    fresh.step()
    assert fresh.lr_factor == 0.45


def test_scheduler_needs_sgd_momentum():
    with pytest.raises(ValueError, match="momentum"):
        LookForwardScheduler(torch.optim.Adam([nn.Parameter(torch.zeros(1))]), 0.1, 0.9)


# ----------------------------------------------------------------------------- hook


class ToyRegressor(nn.Module):
    """A Detectron2-style model: training batches in, a loss dict out; it also logs a scalar,
    as detectors do."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, batch):
        get_event_storage().put_scalar("toy/forward", 1.0)
        return {"loss_mse": F.mse_loss(self.linear(batch), _target(batch))}


def _train_toy_with_hook(trainer_class, device):
    """15 iterations of ``ToyRegressor`` in Detectron2's ``trainer_class`` loop with the LR
    scheduler hook and a look-forward hook deciding after iterations 5 (ascent: look-forward
    between LR factors 0.01 and 0.1) and 10 (plateau: one candidate), not after 15 (the last).
    Returns (trainer, scheduler, indices of the training batches drawn, validation builds)."""
    pulled, val_builds = [], []

    def train_batches():
        generator = torch.Generator().manual_seed(0)
        for index in itertools.count():
            pulled.append(index)
            yield (torch.rand(16, 1, generator=generator) * 2 - 1).to(device)

    def build_val_batches():
        val_builds.append(1)
        return [X_VAL[:8].to(device), X_VAL[8:].to(device)]

    cfg = _cfg(
        PERIOD=5, WINDOW=3, ASCENT_END=0.5, PLATEAU_END=1.0, START_LR_FACTOR=0.01,
        ASCENT_LR_MULTIPLIERS=[1.0, 10.0], ASCENT_MOMENTUM_DELTAS=[0.0],
    )
    params = LookForwardParams.from_config(cfg)
    model = ToyRegressor().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    scheduler = LookForwardScheduler(optimizer, params.start_lr_factor, 0.9)
    trainer = trainer_class(model, train_batches(), optimizer)
    trainer.register_hooks(
        [hooks.LRScheduler(optimizer, scheduler),
         LookForwardHook(params, build_val_batches, scheduler=scheduler)]
    )
    trainer.train(0, 15)
    return trainer, scheduler, pulled, val_builds


def _assert_chose_the_larger_lr_once(trainer, scheduler, pulled, val_builds):
    assert scheduler.lr_factor == pytest.approx(0.1)
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    history = trainer.storage.history("look_forward/lr_factor").values()
    assert [it for _, it in history] == [4, 9]
    assert [v for v, _ in history] == pytest.approx([0.1, 0.1])
    assert len(val_builds) == 1
    # the window's batches went back to training, its metrics to a scratch storage
    assert pulled == list(range(15))
    assert len(trainer.storage.history("toy/forward").values()) == 15


def test_hook_looks_forward_in_a_detectron2_training_loop(caplog):
    caplog.set_level(logging.INFO, logger="rtinst.engine.look_forward")
    result = _train_toy_with_hook(SimpleTrainer, "cpu")
    looks = [r.getMessage() for r in caplog.records if "Look-forward" in r.getMessage()]
    assert len(looks) == 1 and looks[0].startswith("Look-forward at iteration 5 (ascent)")
    assert "Chosen: lr factor 0.1," in looks[0]
    _assert_chose_the_larger_lr_once(*result)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP training needs CUDA")
def test_hook_under_amp_leaves_the_trainers_grad_scaler_alone():
    result = _train_toy_with_hook(AMPTrainer, "cuda")
    _assert_chose_the_larger_lr_once(*result)
    assert result[0].grad_scaler.get_scale() == torch.amp.GradScaler("cuda").get_scale()


def test_hook_needs_a_look_forward_scheduler():
    model = ToyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    trainer = SimpleTrainer(model, iter([]), optimizer)
    trainer.register_hooks(
        [LookForwardHook(LookForwardParams.from_config(_cfg()), list,
                         scheduler=torch.optim.lr_scheduler.StepLR(optimizer, 1))]
    )
    with pytest.raises(TypeError, match="LookForwardScheduler"):
        trainer.train(0, 1)


SMALL_SHAPES = shapes.ShapesParams(train_images=2, val_images=3)


@pytest.fixture
def small_shapes(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SHAPES_PARAMS", SMALL_SHAPES)
    set_cache_dir(str(tmp_path))
    yield
    monkeypatch.undo()
    set_cache_dir(None)


def test_validation_batches_carry_ground_truth_and_are_fixed(small_shapes):
    cfg = _cfg()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (64,)
    cfg.INPUT.MAX_SIZE_TRAIN = 128
    batches = build_validation_batches(cfg, "shapes_val", 2)
    again = build_validation_batches(cfg, "shapes_val", 2)
    assert [len(b) for b in batches] == [2, 2]
    names = [d["file_name"] for b in batches for d in b]
    assert names[3] == names[0] and len(set(names)) == 3  # 3 images, in order, wrapping around
    for batch, batch_again in zip(batches, again):
        for d, d_again in zip(batch, batch_again):
            assert len(d["instances"].gt_boxes) > 0
            assert torch.equal(d["image"], d_again["image"])


# ----------------------------------------------------------------------------- trainer, config


def test_trainer_builds_the_look_forward_scheduler_and_keeps_detectron2_ones():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
    cfg = _cfg(START_LR_FACTOR=0.2)
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.LR_SCHEDULER_NAME = "LookForward"
    scheduler = Trainer.build_lr_scheduler(cfg, optimizer)
    assert isinstance(scheduler, LookForwardScheduler)
    assert (scheduler.lr_factor, scheduler.momentum) == (0.2, cfg.SOLVER.MOMENTUM)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.004)
    for name in ("WarmupMultiStepLR", "WarmupCosineLR"):
        cfg.SOLVER.LR_SCHEDULER_NAME = name
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
        assert not isinstance(Trainer.build_lr_scheduler(cfg, optimizer), LookForwardScheduler)


def test_trainer_puts_the_hook_after_the_lr_scheduler_hook(tmp_path):
    cfg = _cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "LookForward"
    cfg.OUTPUT_DIR = str(tmp_path)
    trainer = Trainer.__new__(Trainer)  # build_hooks' inputs only, no model or data
    trainer.cfg, trainer.max_iter = cfg, 10
    trainer.checkpointer = DetectionCheckpointer(nn.Linear(1, 1), str(tmp_path))
    kinds = [type(h) for h in trainer.build_hooks() if h is not None]
    assert kinds.index(LookForwardHook) == kinds.index(hooks.LRScheduler) + 1


def test_unknown_scheduler_name_is_a_clear_error():
    cfg = _cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "OneCycle"
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
    with pytest.raises(ValueError, match="SOLVER.LR_SCHEDULER_NAME.*'OneCycle'.*LookForward"):
        Trainer.build_lr_scheduler(cfg, optimizer)


@pytest.mark.parametrize(
    "keys, bad_key",
    [
        ({"PLATEAU_END": 0.2}, "PLATEAU_END"),
        ({"ASCENT_END": 1.5}, "ASCENT_END"),
        ({"WINDOW": 0}, "WINDOW"),
        ({"PERIOD": 0}, "PERIOD"),
        ({"VAL_BATCHES": 0}, "VAL_BATCHES"),
        ({"DESCENT_LR_MULTIPLIERS": []}, "DESCENT_LR_MULTIPLIERS"),
        ({"ASCENT_LR_MULTIPLIERS": [1.0, -1.0]}, "ASCENT_LR_MULTIPLIERS"),
        ({"PLATEAU_MOMENTUM_DELTAS": []}, "PLATEAU_MOMENTUM_DELTAS"),
        ({"MOMENTUM_MIN": 0.95}, "MOMENTUM_MIN"),
        ({"START_LR_FACTOR": 2.0}, "START_LR_FACTOR"),
        ({"MAX_LR_FACTOR": 0.0}, "MAX_LR_FACTOR"),
    ],
)
def test_bad_look_forward_setting_names_the_key(keys, bad_key):
    cfg = _cfg(**keys)
    cfg.SOLVER.LR_SCHEDULER_NAME = "LookForward"
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
    with pytest.raises(ValueError, match=f"SOLVER.LOOK_FORWARD.{bad_key} "):
        Trainer.build_lr_scheduler(cfg, optimizer)


def test_the_validation_split_is_required_and_never_the_test_split():
    cfg = _cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "LookForward"
    assert LookForwardParams.from_config(cfg).val_dataset == "val_set"
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9)
    cfg.SOLVER.LOOK_FORWARD.VAL_DATASET = ""
    with pytest.raises(ConfigError, match="SOLVER.LOOK_FORWARD.VAL_DATASET is empty: set it to "
                                          "a validation split"):
        Trainer.build_lr_scheduler(cfg, optimizer)
    cfg.SOLVER.LOOK_FORWARD.VAL_DATASET = "test_set"
    with pytest.raises(ConfigError, match=r"SOLVER.LOOK_FORWARD.VAL_DATASET 'test_set' is in "
                                          r"DATASETS.TEST \('test_set',\): refusing to tune"):
        Trainer.build_lr_scheduler(cfg, optimizer)


def test_adamw_is_refused_naming_the_optimizer_key():
    cfg = _cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = "LookForward"
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=0.02)
    with pytest.raises(ConfigError, match="SOLVER.OPTIMIZER: the LookForward schedule tunes "
                                          "SGD's LR and momentum, not 'ADAMW'"):
        Trainer.build_lr_scheduler(cfg, optimizer)
