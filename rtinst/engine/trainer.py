"""``Trainer``: Detectron2's ``DefaultTrainer`` with rtinst's data loading, evaluation and
checkpoints.

* training data: the mapper ``INPUT.DATASET_MAPPER`` names (``RobustDatasetMapper``: unreadable
  images are logged and skipped) through the resumable loader, so that ``--resume`` continues
  with exactly the batches an uninterrupted run would have seen;
* checkpoints hold the optimizer state (v0.6 dropped it) and the data seed (``SEED``, or a
  shared random one when ``SEED < 0``);
* evaluation: the evaluator registered for the dataset's ``evaluator_type`` (COCO metrics on
  faster-coco-eval's C++ path for "coco"); a video dataset's videos run frame by frame through
  the online tracker (``rtinst.video``) into the YouTube-VIS evaluator;
* checkpoints load through ``SafeCheckpointer`` (no code execution, clear errors);
* the optimizer ``SOLVER.OPTIMIZER`` with its parameter groups and gradient clipping
  (``rtinst.solver``); the LR scheduler and extra hooks that methods registered
  (``SOLVER.LR_SCHEDULER_NAME``, ``SOLVER.HOOKS``), among them ``"LookForward"``: BlitzMask's
  look-forward schedule (``look_forward.py``);
* writers: Detectron2's console line (with ETA), ``metrics.json`` and TensorBoard events; after
  training the run's report (``rtinst.reports``: results.csv, curves, per-class AP, PR curves,
  confusion matrix, gallery, report.html) when ``TEST.REPORT.ENABLED``.
"""
import functools
import logging
import os
import weakref
from collections import OrderedDict

from detectron2.data import build_detection_test_loader
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter, JSONWriter

from rtinst.checkpoint import SafeCheckpointer
from rtinst.data.dataset_mapper import build_dataset_mapper
from rtinst.data.datasets import dataset_thing_classes
from rtinst.data.train_loader import LazyTrainLoader, build_resumable_train_loader
from rtinst.data.ytvis import FRAMES_SUFFIX, is_video_dataset
from rtinst.evaluation import build_evaluator
from rtinst.methods import find_part
from rtinst.reports import write_run_report
from rtinst.solver import build_optimizer
from rtinst.video import inference_on_videos

from .defaults import check_schedule
from .interruption import InterruptCheckpointer
from .look_forward import (
    SCHEDULER_NAME as LOOK_FORWARD,
    LookForwardHook,
    LookForwardParams,
    build_validation_batches,
)

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        self.data_seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        super().__init__(cfg)
        self.checkpointer = self.build_checkpointer(
            self._trainer.model, cfg, trainer=weakref.proxy(self)
        )
        for hook in self._hooks:
            if isinstance(hook, hooks.PeriodicCheckpointer):
                hook.checkpointer = self.checkpointer

    @staticmethod
    def build_checkpointer(model, cfg, **checkpointables):
        return SafeCheckpointer(model, cfg.OUTPUT_DIR, **checkpointables)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """``rtinst.solver.build_optimizer``: ``SOLVER.OPTIMIZER`` ("SGD": Detectron2's) with
        the ``SOLVER`` parameter groups and gradient clipping."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """The scheduler a method registered as ``SOLVER.LR_SCHEDULER_NAME`` (rtinst: Detectron2's
        "WarmupMultiStepLR" and "WarmupCosineLR", BlitzMask Sec. 2.3's "LookForward"); a
        ``ConfigError`` naming the key for an unknown name, a bad setting or an impossible
        schedule (``check_schedule``)."""
        check_schedule(cfg)
        build = find_part("lr_schedulers", cfg.SOLVER.LR_SCHEDULER_NAME, "SOLVER.LR_SCHEDULER_NAME")
        return build(cfg, optimizer)

    def build_hooks(self):
        """Detectron2's hooks, then ``InterruptCheckpointer`` (SIGINT / SIGTERM: checkpoint and
        stop), then those that methods registered under the names of ``SOLVER.HOOKS``, in order;
        ``LookForwardHook`` right after the ``LRScheduler`` hook when the look-forward schedule
        is on."""
        hook_list = super().build_hooks()
        hook_list.append(InterruptCheckpointer())
        if self.cfg.SOLVER.LR_SCHEDULER_NAME == LOOK_FORWARD:
            params = LookForwardParams.from_config(self.cfg)
            build_val_batches = functools.partial(
                build_validation_batches, self.cfg, params.val_dataset, params.val_batches
            )
            position = 1 + next(
                i for i, hook in enumerate(hook_list) if isinstance(hook, hooks.LRScheduler)
            )
            hook_list.insert(position, LookForwardHook(params, build_val_batches))
        for name in self.cfg.SOLVER.HOOKS:
            hook_list.append(find_part("training_hooks", name, "SOLVER.HOOKS")(self.cfg, self))
        return hook_list

    def train(self):
        """Detectron2's training, then (main process) the run's report; returns the last
        evaluation's results (None without ``DATASETS.TEST``)."""
        super().train()
        results = getattr(self, "_last_eval_results", None)
        if comm.is_main_process():
            write_report(self.cfg)
        return results

    def build_train_loader(self, cfg):
        mapper = build_dataset_mapper(cfg, is_train=True)
        return LazyTrainLoader(
            lambda start_iter: build_resumable_train_loader(cfg, mapper, start_iter, self.data_seed),
            lambda: self.start_iter,
        )

    def state_dict(self):
        state = super().state_dict()
        # v0.6's DefaultTrainer leaves out the optimizer (momentum restarted on --resume); later
        # detectron2 versions store the inner trainer's state under "_trainer", as here
        state["_trainer"] = self._trainer.state_dict()
        state["data_seed"] = self.data_seed
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning("The checkpoint has no optimizer state: momentum starts from zero")
        self.data_seed = state_dict.get("data_seed", self.data_seed)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=build_dataset_mapper(cfg, is_train=False)
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Detectron2's evaluation of every ``DATASETS.TEST`` dataset, where a video dataset
        (``rtinst.data.ytvis``) runs through the online tracker (``inference_on_videos``)."""
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} "
                             "datasets of DATASETS.TEST")
        results = OrderedDict()
        for index, name in enumerate(cfg.DATASETS.TEST):
            evaluator = evaluators[index] if evaluators else cls.build_evaluator(cfg, name)
            if is_video_dataset(name):
                frames = None
                if cfg.TEST.VIDEO_FRAME_AP:
                    dataset_thing_classes(name + FRAMES_SUFFIX)  # (the evaluator reads them)
                    frames = cls.build_evaluator(cfg, name + FRAMES_SUFFIX)
                results[name] = inference_on_videos(cfg, model, name, evaluator, frames)
            else:
                results[name] = inference_on_dataset(
                    model, cls.build_test_loader(cfg, name), evaluator
                )
            if comm.is_main_process():
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(results[name])
        return next(iter(results.values())) if len(results) == 1 else results

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_writers(self):
        writers = [
            CommonMetricPrinter(self.max_iter),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
        ]
        try:
            from detectron2.utils.events import TensorboardXWriter

            writers.append(TensorboardXWriter(self.cfg.OUTPUT_DIR))
        except ImportError:
            logger.info("tensorboard is not installed: metrics go to metrics.json and the log only")
        return writers


def write_report(cfg, evaluation=None, iteration=None):
    """``write_run_report`` when ``TEST.REPORT.ENABLED``; a failure is logged, not raised: the
    checkpoints and the evaluation's own files are saved already."""
    if not cfg.TEST.REPORT.ENABLED:
        return None
    try:
        return write_run_report(cfg, evaluation, iteration)
    except Exception:  # noqa: BLE001  (the run's own results are safe; say what went wrong)
        logger.exception("Writing the report into %s failed", cfg.OUTPUT_DIR)
        return None
