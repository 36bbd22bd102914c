#!/usr/bin/env python
"""Train or evaluate any rtinst model.

    python train_net.py --config-file configs/FCOS/MNV2_FPN_shapes.yaml            # train + eval
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model.pth      # evaluate
    python train_net.py --config-file CFG --resume                                  # continue
    python train_net.py --config-file CFG --num-gpus 2    # data-parallel (gloo on CPU, NCCL on GPU)
    python train_net.py --config-file CFG --dataset mine=ann.json,images/ DATASETS.TRAIN "('mine',)"
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model.pth \
        DATASETS.TEST "('shapes_video_val',)"     # video AP, AR and identity metrics, tracked
    python train_net.py --config-file CFG --video-dataset mine=ytvis.json,frames/ --eval-only ...

Every run writes into OUTPUT_DIR, besides its checkpoints and metrics.json: results.csv,
curves.png, per-class AP, precision-recall curves, a confusion matrix, a gallery of predictions
and report.html showing them all (TEST.REPORT.*); TensorBoard reads its events
(tensorboard --logdir OUTPUT_DIR).
"""
import os
import sys
import time
from pickle import UnpicklingError

from detectron2.engine import launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import rtinst  # noqa: F401  (registers rtinst's models and datasets)
from rtinst.checkpoint import CheckpointError
from rtinst.data import DatasetError
from rtinst.engine import ConfigError, Trainer, argument_parser, load_config, setup
from rtinst.engine.defaults import check_schedule
from rtinst.engine.interruption import TrainingInterrupted
from rtinst.engine.trainer import write_report

TRAINING_FILES = ("last_checkpoint", "metrics.json", "config.yaml", "log.txt")


def evaluation_folder(args, cfg):
    """Where ``--eval-only`` writes: ``OUTPUT_DIR``, unless it holds a training run's files
    (its config.yaml and log would be rewritten, even while it trains) and OUTPUT_DIR was not
    set on the command line; then a new ``OUTPUT_DIR/eval_<time>`` beside them."""
    asked = "OUTPUT_DIR" in args.opts[::2]
    folder = cfg.OUTPUT_DIR
    if asked or not any(os.path.exists(os.path.join(folder, f)) for f in TRAINING_FILES):
        return folder
    return os.path.join(folder, time.strftime("eval_%Y%m%d-%H%M%S"))


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpoint = Trainer.build_checkpointer(model, cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            trained = (checkpoint or {}).get("iteration")  # the last one done, from 0
            write_report(cfg, results, None if trained is None else trained + 1)
        verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser().parse_args()
    try:  # fail here, before any process is started
        cfg = load_config(args.config_file, args.opts, datasets=args.dataset,
                          video_datasets=args.video_dataset)
        if not args.eval_only:
            check_schedule(cfg)
    except (ConfigError, DatasetError) as e:
        sys.exit(f"error: {e}")
    if args.eval_only:
        folder = evaluation_folder(args, cfg)
        if folder != cfg.OUTPUT_DIR:
            print(f"--eval-only: {cfg.OUTPUT_DIR} holds a training run; writing to {folder} "
                  "(set OUTPUT_DIR to choose)", file=sys.stderr)
            args.opts = [*args.opts, "OUTPUT_DIR", folder]
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (CheckpointError, ConfigError, DatasetError, UnpicklingError) as e:  # it names the file
        sys.exit(f"error: {e}")
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
