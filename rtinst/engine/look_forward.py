"""BlitzMask's "look-forward" training schedule (BlitzMask Sec. 2.3).

SGD with momentum runs in three phases along ``SOLVER.MAX_ITER``: ascent, plateau and descent.
Instead of a fixed LR curve, the LR factor (times each parameter group's base LR) and the SGD
momentum are chosen during training: every ``PERIOD`` iterations, the phase's candidate
settings (the current ones times each LR multiplier, plus each momentum delta, clamped) are each
tried from a backup of the model, optimizer, scheduler and RNG: ``WINDOW`` training iterations on
the next ``WINDOW`` training batches (the same ones for every candidate), then the loss on a
fixed set of validation batches. Training goes on from the backup with the candidate of lowest
validation loss (ties: the first, i.e. the current settings with the default lists). The window
iterations are extra and discarded: they do not count towards ``MAX_ITER``, their batches are
handed back to the training loop and their metrics go to a scratch ``EventStorage``.
"""
import copy
import functools
import itertools
import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from detectron2.data.build import get_detection_dataset_dicts
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from rtinst.data.dataset_mapper import build_dataset_mapper
from rtinst.data.train_loader import SeededMapDataset
from rtinst.errors import ConfigError

logger = logging.getLogger(__name__)

SCHEDULER_NAME = "LookForward"  # SOLVER.LR_SCHEDULER_NAME that turns the schedule on
PHASES = ("ascent", "plateau", "descent")
VALIDATION_SEED = 0  # augmentation seed of the validation batches


@dataclass(frozen=True)
class LookForwardParams:
    """``SOLVER.LOOK_FORWARD`` (BlitzMask Sec. 2.3), checked; ``momentum_max`` is
    ``SOLVER.MOMENTUM``."""

    period: int
    window: int
    ascent_end: float
    plateau_end: float
    start_lr_factor: float
    max_lr_factor: float
    momentum_min: float
    momentum_max: float
    lr_multipliers: dict  # phase -> tuple of LR multipliers
    momentum_deltas: dict  # phase -> tuple of momentum deltas
    val_dataset: str
    val_batches: int

    @classmethod
    def from_config(cls, cfg):
        """The parameters of ``cfg``; a ``ConfigError`` (a ``ValueError``) naming the key at
        fault when one is out of range."""
        lf = cfg.SOLVER.LOOK_FORWARD
        _require(lf.PERIOD >= 1, "PERIOD", f"must be >= 1, got {lf.PERIOD}")
        _require(lf.WINDOW >= 1, "WINDOW", f"must be >= 1, got {lf.WINDOW}")
        _require(lf.VAL_BATCHES >= 1, "VAL_BATCHES", f"must be >= 1, got {lf.VAL_BATCHES}")
        _require(0 <= lf.ASCENT_END <= 1, "ASCENT_END", f"must be in [0, 1], got {lf.ASCENT_END}")
        _require(
            lf.ASCENT_END <= lf.PLATEAU_END <= 1,
            "PLATEAU_END",
            f"must be in [ASCENT_END={lf.ASCENT_END}, 1], got {lf.PLATEAU_END}",
        )
        _require(lf.MAX_LR_FACTOR > 0, "MAX_LR_FACTOR", f"must be > 0, got {lf.MAX_LR_FACTOR}")
        _require(
            0 < lf.START_LR_FACTOR <= lf.MAX_LR_FACTOR,
            "START_LR_FACTOR",
            f"must be in (0, MAX_LR_FACTOR={lf.MAX_LR_FACTOR}], got {lf.START_LR_FACTOR}",
        )
        _require(
            0 <= lf.MOMENTUM_MIN <= cfg.SOLVER.MOMENTUM,
            "MOMENTUM_MIN",
            f"must be in [0, SOLVER.MOMENTUM={cfg.SOLVER.MOMENTUM}], got {lf.MOMENTUM_MIN}",
        )
        lr_multipliers, momentum_deltas = {}, {}
        for phase in PHASES:
            lr_key = f"{phase.upper()}_LR_MULTIPLIERS"
            momentum_key = f"{phase.upper()}_MOMENTUM_DELTAS"
            lr_multipliers[phase] = tuple(float(m) for m in lf[lr_key])
            momentum_deltas[phase] = tuple(float(d) for d in lf[momentum_key])
            _require(
                lr_multipliers[phase] and min(lr_multipliers[phase]) > 0,
                lr_key,
                f"must be a non-empty list of numbers > 0, got {lf[lr_key]}",
            )
            _require(momentum_deltas[phase], momentum_key, "must be a non-empty list")
        _require(lf.VAL_DATASET, "VAL_DATASET", "is empty: set it to a validation split (the "
                 "schedule is tuned on its loss), not one of DATASETS.TEST")
        _require(lf.VAL_DATASET not in cfg.DATASETS.TEST, "VAL_DATASET",
                 f"{lf.VAL_DATASET!r} is in DATASETS.TEST {tuple(cfg.DATASETS.TEST)}: refusing to "
                 "tune the schedule on the test split; name a validation split")
        return cls(
            period=lf.PERIOD,
            window=lf.WINDOW,
            ascent_end=lf.ASCENT_END,
            plateau_end=lf.PLATEAU_END,
            start_lr_factor=lf.START_LR_FACTOR,
            max_lr_factor=lf.MAX_LR_FACTOR,
            momentum_min=lf.MOMENTUM_MIN,
            momentum_max=cfg.SOLVER.MOMENTUM,
            lr_multipliers=lr_multipliers,
            momentum_deltas=momentum_deltas,
            val_dataset=lf.VAL_DATASET,
            val_batches=lf.VAL_BATCHES,
        )


def build_look_forward_scheduler(cfg, optimizer):
    """The ``LookForwardScheduler`` of ``SOLVER.LR_SCHEDULER_NAME "LookForward"`` (rtinst
    registers it), starting at ``START_LR_FACTOR``; a ``ConfigError`` naming the key for a bad
    ``SOLVER.LOOK_FORWARD`` setting or an optimizer without momentum (it tunes SGD's).
    ``Trainer.build_hooks`` adds its ``LookForwardHook``."""
    if cfg.SOLVER.OPTIMIZER != "SGD":
        raise ConfigError(f"SOLVER.OPTIMIZER: the LookForward schedule tunes SGD's LR and "
                          f"momentum, not {cfg.SOLVER.OPTIMIZER!r}'s: use SOLVER.OPTIMIZER SGD or "
                          "another SOLVER.LR_SCHEDULER_NAME")
    params = LookForwardParams.from_config(cfg)
    return LookForwardScheduler(optimizer, params.start_lr_factor, cfg.SOLVER.MOMENTUM)


def _require(condition, key, message):
    if not condition:
        raise ConfigError(f"SOLVER.LOOK_FORWARD.{key} {message}")


class LookForwardScheduler(torch.optim.lr_scheduler._LRScheduler):
    """Every parameter group's LR is its base LR times ``lr_factor``, and its ``"momentum"`` is
    ``momentum`` (BlitzMask Sec. 2.3). ``step()`` (Detectron2's ``LRScheduler`` hook calls it
    after every iteration) keeps both as they are; ``set_settings`` changes them. Both are in
    ``state_dict()``, so ``--resume`` restores them."""

    def __init__(self, optimizer, lr_factor, momentum, last_epoch=-1):
        for i, group in enumerate(optimizer.param_groups):
            if "momentum" not in group:
                raise ValueError(
                    f"{SCHEDULER_NAME} schedules SGD momentum, but parameter group {i} of "
                    f"{type(optimizer).__name__} has no 'momentum'"
                )
        self.lr_factor = float(lr_factor)
        self.momentum = float(momentum)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * self.lr_factor for base_lr in self.base_lrs]

    def step(self, epoch=None):
        super().step(epoch)
        self._apply()

    def set_settings(self, lr_factor, momentum):
        """Uses ``lr_factor`` and ``momentum`` from now on (written into the optimizer)."""
        self.lr_factor, self.momentum = float(lr_factor), float(momentum)
        self._apply()

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._apply()

    def _apply(self):
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
            group["momentum"] = self.momentum
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def phase_at(iteration, max_iter, ascent_end, plateau_end):
    """BlitzMask Sec. 2.3's phase of ``iteration``: "ascent" before ``ascent_end * max_iter``,
    "plateau" before ``plateau_end * max_iter``, "descent" after."""
    if iteration < ascent_end * max_iter:
        return "ascent"
    if iteration < plateau_end * max_iter:
        return "plateau"
    return "descent"


def candidate_settings(lr_factor, momentum, phase, params):
    """The (lr_factor, momentum) pairs to look forward to in ``phase`` (BlitzMask Sec. 2.3):
    each of the phase's LR multipliers (outer loop) with each momentum delta (inner), the LR
    factor clamped to ``<= MAX_LR_FACTOR`` and the momentum to ``[MOMENTUM_MIN,
    SOLVER.MOMENTUM]``, duplicates dropped, order kept. ``params``: ``LookForwardParams`` or a
    config."""
    if not isinstance(params, LookForwardParams):
        params = LookForwardParams.from_config(params)
    candidates = []
    for multiplier, delta in itertools.product(
        params.lr_multipliers[phase], params.momentum_deltas[phase]
    ):
        candidate = (
            min(lr_factor * multiplier, params.max_lr_factor),
            min(max(momentum + delta, params.momentum_min), params.momentum_max),
        )
        if candidate not in candidates:
            candidates.append(candidate)
    return candidates


def look_forward(model, optimizer, scheduler, train_step, validation_loss, candidates, window):
    """Tries every candidate (lr_factor, momentum) for ``window`` training iterations from the
    same backup and keeps the one with the lowest validation loss (BlitzMask Sec. 2.3).

    ``train_step()`` runs one SGD iteration with the optimizer's current settings; it is called
    exactly ``window`` times per candidate, candidate after candidate, so that a caller can
    replay the same batches for each. ``validation_loss()`` returns a number; it runs under
    ``torch.no_grad()``. The model, optimizer and scheduler state and the torch RNG are restored
    before each candidate and at the end, so the window iterations leave no trace; then the best
    candidate (non-finite losses count as infinite; ties: the first) is applied through
    ``scheduler.set_settings``. Returns (best candidate, [(candidate, validation loss), ...]).
    """
    if not candidates:
        raise ValueError("look_forward needs at least one candidate")
    backup = _backup(model, optimizer, scheduler)
    results = []
    for candidate in candidates:
        _restore(backup, model, optimizer, scheduler)
        scheduler.set_settings(*candidate)
        for _ in range(window):
            train_step()
        with torch.no_grad():
            results.append((candidate, float(validation_loss())))
    _restore(backup, model, optimizer, scheduler)
    best = min(results, key=lambda r: r[1] if math.isfinite(r[1]) else math.inf)[0]
    scheduler.set_settings(*best)
    return best, results


def _backup(model, optimizer, scheduler):
    """Deep copies of everything a training iteration changes."""
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(optimizer.state_dict()),
        copy.deepcopy(scheduler.state_dict()),
        torch.get_rng_state(),
        cuda_rng,
    )


def _restore(backup, model, optimizer, scheduler):
    """Puts ``_backup``'s states back (gradients cleared); the backup stays intact."""
    model_state, optimizer_state, scheduler_state, cpu_rng, cuda_rng = backup
    model.load_state_dict(model_state)  # copies into the parameters and buffers
    # copies: a loaded optimizer state may share tensors with the dict it came from
    optimizer.load_state_dict(copy.deepcopy(optimizer_state))
    optimizer.zero_grad(set_to_none=True)
    scheduler.load_state_dict(copy.deepcopy(scheduler_state))
    torch.set_rng_state(cpu_rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)


def build_validation_batches(cfg, dataset_name, num_batches):
    """``num_batches`` batches (this process's share of ``SOLVER.IMS_PER_BATCH`` images) of
    ``dataset_name`` mapped by ``build_dataset_mapper(cfg, is_train=True)`` (ground truth kept),
    their augmentation seeded, so the same on every call (BlitzMask Sec. 2.3's validation
    loss). Images are taken in dataset order, wrapping around."""
    records = get_detection_dataset_dicts(
        [dataset_name], filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    dataset = SeededMapDataset(records, build_dataset_mapper(cfg, is_train=True), VALIDATION_SEED)
    total = cfg.SOLVER.IMS_PER_BATCH
    per_rank = total // comm.get_world_size()
    starts = (b * total + comm.get_rank() * per_rank for b in range(num_batches))
    return [
        [dataset[(p, p % len(records))] for p in range(start, start + per_rank)]
        for start in starts
    ]


def _total_loss(losses):
    """A model's training output (a loss dict, or one loss tensor) as one loss tensor."""
    return losses if isinstance(losses, torch.Tensor) else sum(losses.values())


def _autocast(enabled):
    return torch.autocast("cuda") if enabled else nullcontext()


class _ReplayTrainStep:
    """``SimpleTrainer.run_step`` (``AMPTrainer``'s when ``grad_scaler`` is given) without
    metrics, on ``batches`` in turn, starting over after the last one: with
    ``len(batches) == window`` every look-forward candidate trains on the same batches
    (BlitzMask Sec. 2.3). With AMP, each candidate gets its own ``GradScaler`` starting at the
    trainer's scale, so the trainer's scaler is left alone."""

    def __init__(self, model, optimizer, batches, grad_scaler=None):
        self._model, self._optimizer, self._batches = model, optimizer, batches
        self._amp_scale = grad_scaler.get_scale() if grad_scaler is not None else None
        self._scaler = None
        self._calls = 0

    def __call__(self):
        index = self._calls % len(self._batches)
        self._calls += 1
        if index == 0 and self._amp_scale is not None:
            self._scaler = torch.amp.GradScaler("cuda", init_scale=self._amp_scale)
        with _autocast(self._scaler is not None):
            loss = _total_loss(self._model(self._batches[index]))
        self._optimizer.zero_grad()
        if self._scaler is None:
            loss.backward()
            self._optimizer.step()
        else:
            self._scaler.scale(loss).backward()
            self._scaler.step(self._optimizer)
            self._scaler.update()


class LookForwardHook(HookBase):
    """Runs ``look_forward`` every ``params.period`` iterations (not after the last one) with
    the phase's candidates (BlitzMask Sec. 2.3); with a single candidate it is applied without
    looking forward. Logs each look-forward and puts the chosen settings in the trainer's
    storage as ``look_forward/lr_factor`` and ``look_forward/momentum``. A look-forward costs
    ``len(candidates) * WINDOW`` extra (discarded) training iterations and
    ``len(candidates) * VAL_BATCHES`` forward passes; the trainer's ``iter`` does not move.

    ``build_val_batches()`` returns the validation batches; it is called once, at the first
    look-forward. ``scheduler`` (a ``LookForwardScheduler``) defaults to the trainer's. Works
    on a ``DefaultTrainer`` (its inner ``_trainer``) or a ``SimpleTrainer``/``AMPTrainer``.
    """

    def __init__(self, params, build_val_batches, scheduler=None):
        self._params = params
        self._build_val_batches = build_val_batches
        self._val_batches = None
        self._scheduler = scheduler

    @property
    def scheduler(self):
        return self._scheduler or self.trainer.scheduler

    def before_train(self):
        if not isinstance(self.scheduler, LookForwardScheduler):
            raise TypeError(
                f"LookForwardHook needs a LookForwardScheduler, the trainer has "
                f"{type(self.scheduler).__name__}"
            )

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter % self._params.period == 0 and next_iter < self.trainer.max_iter:
            self._decide(next_iter)

    def _decide(self, next_iter):
        """Chooses the settings of the iterations from ``next_iter`` on."""
        params, scheduler = self._params, self.scheduler
        phase = phase_at(next_iter, self.trainer.max_iter, params.ascent_end, params.plateau_end)
        candidates = candidate_settings(scheduler.lr_factor, scheduler.momentum, phase, params)
        if len(candidates) == 1:
            scheduler.set_settings(*candidates[0])
        else:
            best, results = self._look_forward(candidates)
            tried = "; ".join(
                f"lr factor {lr:.5g}, momentum {m:.4g}: {loss:.5g}" for (lr, m), loss in results
            )
            logger.info(
                f"Look-forward at iteration {next_iter} ({phase}), validation loss after "
                f"{params.window} iterations with {tried}. Chosen: lr factor {best[0]:.5g}, "
                f"momentum {best[1]:.4g}"
            )
        storage = self.trainer.storage
        storage.put_scalar("look_forward/lr_factor", scheduler.lr_factor, smoothing_hint=False)
        storage.put_scalar("look_forward/momentum", scheduler.momentum, smoothing_hint=False)

    def _look_forward(self, candidates):
        loop = getattr(self.trainer, "_trainer", self.trainer)  # the SimpleTrainer
        if self._val_batches is None:
            self._val_batches = self._build_val_batches()
        window = self._params.window
        # the next training batches, handed back: training sees them as it would have anyway
        batches = [next(loop._data_loader_iter) for _ in range(window)]
        loop._data_loader_iter = itertools.chain(batches, loop._data_loader_iter)
        grad_scaler = getattr(loop, "grad_scaler", None)
        train_step = _ReplayTrainStep(loop.model, loop.optimizer, batches, grad_scaler)
        validation_loss = functools.partial(
            _validation_loss, loop.model, self._val_batches, grad_scaler is not None
        )
        with EventStorage(self.trainer.iter):  # the window iterations' model-side metrics
            return look_forward(
                loop.model, loop.optimizer, self.scheduler, train_step, validation_loss,
                candidates, window,
            )


def _validation_loss(model, batches, amp):
    """Mean over ``batches`` (and processes) of the summed training losses of ``model``, in
    training mode (BlitzMask Sec. 2.3); call it under ``torch.no_grad()``."""
    with _autocast(amp):
        local = sum(float(_total_loss(model(batch))) for batch in batches) / len(batches)
    return sum(comm.all_gather(local)) / comm.get_world_size()
