#!/usr/bin/env python
"""Train or evaluate any rtinst model.

    python train_net.py --config-file configs/FCOS/MNV2_FPN_shapes.yaml            # train + eval
    python train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model.pth      # evaluate
    python train_net.py --config-file CFG --resume                                  # continue
    python train_net.py --config-file CFG --num-gpus 2    # data-parallel (gloo on CPU, NCCL on GPU)
    python train_net.py --config-file CFG --dataset mine=ann.json,images/ DATASETS.TRAIN "('mine',)"
"""
import sys

from detectron2.engine import launch
from detectron2.evaluation import verify_results

import rtinst  # noqa: F401  (registers rtinst's models and datasets)
from rtinst.checkpoint import CheckpointError
from rtinst.data import DatasetError
from rtinst.engine import ConfigError, Trainer, argument_parser, load_config, setup


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        Trainer.build_checkpointer(model, cfg).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = argument_parser().parse_args()
    try:
        load_config(args.config_file, args.opts)  # fail here, before any process is started
    except ConfigError as e:
        sys.exit(f"error: {e}")
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except (CheckpointError, ConfigError, DatasetError) as e:  # one process: the error names it
        sys.exit(f"error: {e}")
