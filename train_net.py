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
import importlib.util
import logging
import os
import sys
import time
from pickle import UnpicklingError

# torch, Detectron2 and rtinst (seconds to import) are imported once the arguments are parsed, so
# that --help and argument errors answer at once; main() imports what it needs, also in the
# processes that launch() starts, which import this file without running its __main__ part.

TRAINING_FILES = ("last_checkpoint", "metrics.json", "config.yaml", "log.txt")


def load_cli():
    """``rtinst/cli.py`` (the argument parser; standard library only), read from its file:
    ``import rtinst.cli`` would first run ``rtinst/__init__.py``, which imports torch and
    Detectron2."""
    package = importlib.util.find_spec("rtinst").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("rtinst_cli", os.path.join(package, "cli.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


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
    # rtinst first: importing it checks the detectron2 build before any detectron2 code runs
    from rtinst.engine import Trainer, setup
    from rtinst.engine.predictor import optimizes_for_inference
    from rtinst.engine.trainer import write_report
    from rtinst.modeling.inference_fusion import optimize_for_inference

    from detectron2.evaluation import verify_results
    from detectron2.utils import comm

    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpoint = Trainer.build_checkpointer(model, cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        if optimizes_for_inference(cfg):  # on CPU, as the Predictor runs it (same AP)
            model = optimize_for_inference(model)
            logging.getLogger("rtinst").info(
                "evaluating the model optimised for inference (TEST.OPTIMIZE_FOR_INFERENCE; "
                "False: as built)")
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
    cli = load_cli()
    args = cli.argument_parser().parse_args()
    missing = cli.missing_config_file(args.config_file)
    if missing:
        sys.exit(f"error: {missing}")
    from rtinst.engine import load_config
    from rtinst.engine.defaults import check_schedule, check_video_datasets
    from rtinst.errors import RtinstError, TrainingInterrupted

    from detectron2.engine import launch

    try:  # fail here, before any process is started
        cfg = load_config(args.config_file, args.opts, datasets=args.dataset,
                          video_datasets=args.video_dataset)
        if not args.eval_only:
            check_schedule(cfg)
        check_video_datasets(cfg)
    except RtinstError as e:
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
    except (RtinstError, UnpicklingError) as e:  # it names the file
        sys.exit(f"error: {e}")
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
