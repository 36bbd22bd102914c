"""Command-line arguments and config set-up shared by ``train_net.py`` and the tools."""
import os

from detectron2 import model_zoo
from detectron2.engine import default_argument_parser as _d2_argument_parser
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from rtinst.config import ConfigError, get_cfg
from rtinst.data.datasets import register_from_cfg, register_from_spec, set_cache_dir


ZOO_PREFIX = "zoo:"


def argument_parser(epilog=None):
    """Detectron2's arguments plus ``--dataset name=annotations.json,image_dir`` (repeatable)."""
    parser = _d2_argument_parser(epilog=epilog)
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME=JSON,IMAGE_DIR",
        help="register a COCO-format dataset under NAME (use it in DATASETS.TRAIN/TEST)",
    )
    return parser


def _unknown_key(error):
    return isinstance(error, KeyError) and "Non-existent config key" in str(error)


def config_file_path(spec):
    """The file behind ``spec``: a config path, or ``zoo:<name>`` (a Detectron2 model-zoo config,
    e.g. ``zoo:COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml``)."""
    if spec.startswith(ZOO_PREFIX):
        name = spec[len(ZOO_PREFIX) :]
        try:
            return model_zoo.get_config_file(name)
        except RuntimeError:
            raise ConfigError(f"not a Detectron2 model-zoo config: {name}") from None
    if not os.path.isfile(spec):
        raise ConfigError(f"config file not found: {spec}")
    return spec


def load_config(config_file, opts=(), device=None):
    """rtinst's config with ``config_file`` (a path or ``zoo:<name>``), then ``opts``
    (KEY VALUE ...), then ``device`` (when given) merged; a ``ConfigError`` naming the file or
    option at fault otherwise."""
    cfg = get_cfg()
    path = config_file_path(config_file)
    try:
        cfg.merge_from_file(path)
    except FileNotFoundError as e:  # a _BASE_ it inherits
        raise ConfigError(f"{path}: inherited config file not found: {e.filename or e}") from e
    except KeyError as e:
        if _unknown_key(e):
            raise ConfigError(f"{path} (or a _BASE_ it inherits): {e.args[0]}") from e
        raise
    flags = [o for o in opts if isinstance(o, str) and o.startswith("--")]
    if flags:
        raise ConfigError(
            f"{flags[0]} comes after the KEY VALUE config options, which must be last: "
            f"put {', '.join(flags)} before them"
        )
    try:
        cfg.merge_from_list(list(opts))
    except KeyError as e:
        if _unknown_key(e):
            raise ConfigError(f"command-line option: {e.args[0]}") from e
        raise
    except (AssertionError, ValueError) as e:  # yacs: odd KEY VALUE list, type mismatch
        raise ConfigError(f"command-line options {list(opts)}: {e}") from e
    if device:
        cfg.MODEL.DEVICE = device
    return cfg


def setup(args):
    """Config from ``args``; registers the datasets it names; Detectron2's logging/seeding."""
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    set_cache_dir(cfg.DATASETS.CACHE_DIR or None)
    register_from_cfg(cfg)
    for spec in args.dataset:
        register_from_spec(spec)
    default_setup(cfg, args)
    # rtinst's own messages (e.g. look-forward decisions) to the console and log.txt, as
    # Detectron2's
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="rtinst")
    return cfg
