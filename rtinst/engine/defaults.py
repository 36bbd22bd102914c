"""Config set-up shared by ``train_net.py`` and the tools, and their command-line arguments
(``argument_parser``, from ``rtinst/cli.py``: the standard library only)."""
import os

import torch
import yaml
from detectron2 import model_zoo
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from rtinst.cli import ZOO_PREFIX, argument_parser, missing_config_file  # noqa: F401
from rtinst.config import get_cfg, set_class_count
from rtinst.data.datasets import (
    dataset_thing_classes,
    register_from_cfg,
    register_from_spec,
    set_cache_dir,
)
from rtinst.data.ytvis import is_video_dataset, register_video_from_spec
from rtinst.errors import ConfigError

BASE_KEY = "_BASE_"


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
    missing = missing_config_file(spec)
    if missing:
        raise ConfigError(missing)
    return spec


def _read_yaml(path, inherited_by):
    """The mapping in the YAML file ``path``, read with ``yaml.safe_load`` (no Python tags: a
    config file cannot run code); a ``ConfigError`` naming the file otherwise."""
    where = f"{path}" + (f" (the _BASE_ of {inherited_by})" if inherited_by else "")
    if not os.path.isfile(path):
        if inherited_by:
            raise ConfigError(f"{inherited_by}: inherited config file not found: {path}")
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except yaml.constructor.ConstructorError as e:
        tag = e.problem.rpartition(" ")[2] if e.problem else "?"
        raise ConfigError(
            f"{where}, line {e.problem_mark.line + 1}: refusing the YAML tag {tag}: config files "
            "hold plain values only (a tag could run code)"
        ) from None
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise ConfigError(f"{where} is not valid YAML: {reason}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {where}: {e}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{where}: expected KEY: VALUE mappings, found a {type(content).__name__}")
    return content


def check_config_files(path, chain=()):
    """Reads ``path`` and every ``_BASE_`` it inherits (relative to the inheriting file, as
    fvcore resolves them) with safe YAML; a ``ConfigError`` for a missing, malformed or unsafe
    file or an inheritance cycle, naming the files."""
    path = os.path.abspath(os.path.expanduser(path))
    if path in chain:
        cycle = " -> ".join((*chain[chain.index(path):], path))
        raise ConfigError(f"_BASE_ cycle: {cycle}")
    content = _read_yaml(path, chain[-1] if chain else None)
    bases = content.get(BASE_KEY, [])
    for base in bases if isinstance(bases, list) else [bases]:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: {BASE_KEY} must name files, found {base!r}")
        if base.startswith(("http://", "https://")):
            continue  # fetched by fvcore, also with safe YAML
        base = os.path.join(os.path.dirname(path), os.path.expanduser(base))
        check_config_files(base, (*chain, path))


def load_config(config_file, opts=(), device=None, datasets=(), video_datasets=()):
    """rtinst's config with ``config_file`` (a path or ``zoo:<name>``), then ``opts``
    (KEY VALUE ...), then ``device`` (when given) merged; a ``ConfigError`` naming the file or
    option at fault otherwise. The datasets of ``DATASETS.REGISTER`` and ``datasets``
    ("name=annotations.json,image_dir" specs), and the video datasets of
    ``DATASETS.REGISTER_VIDEO`` and ``video_datasets`` ("name=annotations.json,frames_dir") are
    registered, and every head's class count is set from those that ``DATASETS.TRAIN`` /
    ``DATASETS.TEST`` name (``set_class_count``)."""
    cfg = get_cfg()
    path = config_file_path(config_file)
    check_config_files(path)
    try:
        cfg.merge_from_file(path, allow_unsafe=False)
    except KeyError as e:
        if _unknown_key(e):
            raise ConfigError(f"{path} (or a _BASE_ it inherits): {e.args[0]}") from e
        raise
    except (AssertionError, ValueError, TypeError) as e:  # yacs: type mismatch, bad base merge
        raise ConfigError(f"{path} (or a _BASE_ it inherits): {e}") from e
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
    check_device(cfg.MODEL.DEVICE)
    register_from_cfg(cfg)
    for spec in datasets:
        register_from_spec(spec)
    for spec in (*cfg.DATASETS.REGISTER_VIDEO, *video_datasets):
        register_video_from_spec(spec)
    set_class_count(cfg, *dataset_classes(cfg))
    return cfg


def dataset_classes(cfg):
    """``(class names, dataset name)`` of the registered datasets that ``DATASETS.TRAIN`` and
    ``DATASETS.TEST`` name (``(None, None)`` if none declares classes); a ``ConfigError`` when
    their class counts differ."""
    found = {}
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name in DatasetCatalog.list() and name not in found:
                classes = dataset_thing_classes(name)
                if classes is not None:
                    found[name] = (key, classes)
    counts = {len(classes) for _, classes in found.values()}
    if len(counts) > 1:
        listed = ", ".join(f"DATASETS.{k} '{n}': {len(c)}" for n, (k, c) in found.items())
        raise ConfigError(f"the datasets' class counts differ ({listed}): a model has one")
    return next(((classes, name) for name, (_, classes) in found.items()), (None, None))


def check_video_datasets(cfg):
    """Loads once each video dataset that ``DATASETS.TRAIN`` / ``DATASETS.TEST`` name (itself or
    its ``<name>_frames``), in the cache dir of ``cfg``: the loader's ``DatasetError`` (a missing
    frame file, a ``length`` that is not the number of ``file_names``, ...) then comes before
    a model is built."""
    set_cache_dir(cfg.DATASETS.CACHE_DIR or None)
    named = [n for n in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST) if n in DatasetCatalog.list()]
    videos = [n if is_video_dataset(n) else MetadataCatalog.get(n).get("video_dataset")
              for n in named]
    for name in dict.fromkeys(v for v in videos if v):
        DatasetCatalog.get(name)


def check_device(device):
    """A ``ConfigError`` for a ``MODEL.DEVICE`` this machine does not have."""
    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"MODEL.DEVICE {device!r}: not a device ({e})") from None
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"MODEL.DEVICE {device}: no CUDA device on this machine; use MODEL.DEVICE cpu"
            )
        if kind.index is not None and kind.index >= count:
            raise ConfigError(f"MODEL.DEVICE {device}: this machine has {count} CUDA device(s)")
    elif kind.type != "cpu":
        raise ConfigError(f"MODEL.DEVICE {device!r}: expected cpu or cuda[:N]")


def check_schedule(cfg):
    """The ``SOLVER.STEPS`` that happen in training: those below ``SOLVER.MAX_ITER`` (Detectron2
    drops later ones, with a warning, but fails on one equal to it); a ``ConfigError`` for a
    schedule that cannot run: a non-positive ``SOLVER.MAX_ITER`` or ``SOLVER.IMS_PER_BATCH``,
    or ``SOLVER.STEPS`` that do not increase."""
    solver = cfg.SOLVER
    if solver.MAX_ITER <= 0:
        raise ConfigError(f"SOLVER.MAX_ITER must be positive, got {solver.MAX_ITER}")
    if solver.IMS_PER_BATCH <= 0:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH must be positive, got {solver.IMS_PER_BATCH}")
    steps = tuple(solver.STEPS)
    if list(steps) != sorted(set(steps)):
        raise ConfigError(f"SOLVER.STEPS must strictly increase, got {steps}")
    return tuple(s for s in steps if s < solver.MAX_ITER)


def setup(args):
    """Config from ``args`` (registering the datasets it names); Detectron2's logging/seeding."""
    cfg = load_config(args.config_file, args.opts, datasets=args.dataset,
                      video_datasets=args.video_dataset)
    cfg.freeze()
    set_cache_dir(cfg.DATASETS.CACHE_DIR or None)
    default_setup(cfg, args)
    # rtinst's own messages (e.g. look-forward decisions) to the console and log.txt, as
    # Detectron2's
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="rtinst")
    return cfg
