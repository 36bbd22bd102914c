"""The command line of ``train_net.py`` (``argument_parser``), in the standard library alone.

``--help`` and argument errors must answer at once, before torch, Detectron2 and rtinst load
(seconds). ``import rtinst.cli`` would run ``rtinst/__init__.py`` first, which imports them all,
so ``train_net.py`` reads this file by its path (its ``load_cli``); rtinst's own code imports it
as usual (``rtinst.engine.argument_parser`` is this module's). Keep it importing nothing but the
standard library: ``tests/test_import_structure.py`` checks that ``train_net.py --help`` loads no
torch.
"""
import argparse
import os
import sys

ZOO_PREFIX = "zoo:"


def default_argument_parser(epilog=None):
    """Detectron2 v0.6's ``detectron2.engine.default_argument_parser``, option for option (same
    names, defaults and help; ``tests/test_import_structure.py`` compares the two), without
    importing Detectron2."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or f"""
Examples:

Run on single machine:
    $ {sys.argv[0]} --num-gpus 8 --config-file cfg.yaml

Change some config options:
    $ {sys.argv[0]} --config-file cfg.yaml MODEL.WEIGHTS /path/to/weight.pth SOLVER.BASE_LR 0.001

Run on multiple machines:
    (machine0)$ {sys.argv[0]} --machine-rank 0 --num-machines 2 --dist-url <URL> [--other-flags]
    (machine1)$ {sys.argv[0]} --machine-rank 1 --num-machines 2 --dist-url <URL> [--other-flags]
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Whether to attempt to resume from the checkpoint directory. "
        "See documentation of `DefaultTrainer.resume_or_load()` for what it means.",
    )
    parser.add_argument("--eval-only", action="store_true", help="perform evaluation only")
    parser.add_argument("--num-gpus", type=int, default=1, help="number of gpus *per machine*")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    # Detectron2's deterministic port, so that orphan processes show as a port in use
    port = 2**15 + 2**14 + hash(os.getuid() if sys.platform != "win32" else 1) % 2**14
    parser.add_argument(
        "--dist-url",
        default=f"tcp://127.0.0.1:{port}",
        help="initialization URL for pytorch distributed backend. See "
        "https://pytorch.org/docs/stable/distributed.html for details.",
    )
    parser.add_argument(
        "opts",
        help="""
Modify config options at the end of the command. For Yacs configs, use
space-separated "PATH.KEY VALUE" pairs.
For python-based LazyConfig, use "path.key=value".
        """.strip(),
        default=None,
        nargs=argparse.REMAINDER,
    )
    return parser


def argument_parser(epilog=None):
    """Detectron2's arguments plus ``--dataset name=annotations.json,image_dir`` and
    ``--video-dataset name=ytvis.json,frames_dir`` (both repeatable)."""
    parser = default_argument_parser(epilog=epilog)
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME=JSON,IMAGE_DIR",
        help="register a COCO-format dataset under NAME (use it in DATASETS.TRAIN/TEST)",
    )
    parser.add_argument(
        "--video-dataset",
        action="append",
        default=[],
        metavar="NAME=JSON,FRAMES_DIR",
        help="register a YouTube-VIS-format video dataset under NAME (and its frames as "
        "NAME_frames; use them in DATASETS.TRAIN/TEST)",
    )
    return parser


def missing_config_file(spec):
    """``"config file not found: <spec>"`` when ``spec`` (a ``--config-file``) is neither an
    existing file nor a ``zoo:<name>``, else None: the tools say so before loading anything."""
    if spec.startswith(ZOO_PREFIX) or os.path.isfile(spec):
        return None
    return f"config file not found: {spec}"
