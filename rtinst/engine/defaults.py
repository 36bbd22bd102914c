"""Command-line arguments and config set-up shared by ``train_net.py`` and the tools."""
from detectron2.engine import default_argument_parser as _d2_argument_parser
from detectron2.engine import default_setup

from rtinst.config import get_cfg
from rtinst.data.datasets import register_from_cfg, register_from_spec, set_cache_dir


class ConfigError(ValueError):
    """A config file or option is wrong; the message names the file or option."""


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


def load_config(config_file, opts=()):
    """rtinst's config with ``config_file`` and ``opts`` merged, with clear errors."""
    cfg = get_cfg()
    try:
        cfg.merge_from_file(config_file)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {config_file}") from e
    except KeyError as e:
        if _unknown_key(e):
            raise ConfigError(f"{config_file} (or a _BASE_ it inherits): {e.args[0]}") from e
        raise
    try:
        cfg.merge_from_list(list(opts))
    except KeyError as e:
        if _unknown_key(e):
            raise ConfigError(f"command-line option: {e.args[0]}") from e
        raise
    except AssertionError as e:  # yacs: odd number of KEY VALUE items, or a type mismatch
        raise ConfigError(f"command-line options {list(opts)}: {e}") from e
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
    return cfg
