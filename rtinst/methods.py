"""Method plug-ins: how a method joins rtinst without any file of rtinst changing.

A method is a Python package. Importing it registers its models in Detectron2's registries as
usual (``@META_ARCH_REGISTRY.register()``, ...) and calls ``register_method`` once, declaring its
config keys and, where it has them, the parts that rtinst's shared code looks up by name:

==================  ===============================================  ===========================
``register_method``  looked up by                                    used by
==================  ===============================================  ===========================
add_config          (every method's is applied)                      ``rtinst.config.get_cfg``
class_count_keys    (every method's is set from the dataset)         ``rtinst.engine.load_config``
detection_families  ``(config key, value)`` the config has           ``tools/benchmark.py``,
                                                                     ``tools/demo.py``
evaluators          the test dataset's ``evaluator_type`` metadata   ``Trainer.build_evaluator``
dataset_mappers     ``INPUT.DATASET_MAPPER``                         the training / test loaders
train_samplers      ``DATALOADER.SAMPLER_TRAIN``                     the resumable training loader
export_pipelines    the model's class (its META_ARCHITECTURE)        ``rtinst.export``
track_associations  ``MODEL.TRACKER.ASSOCIATION``                    ``OnlineTracker``
trackers            ``MODEL.TRACKER.NAME``                           ``rtinst.video.build_tracker``
lr_schedulers       ``SOLVER.LR_SCHEDULER_NAME``                     ``Trainer.build_lr_scheduler``
training_hooks      each name of ``SOLVER.HOOKS``                    ``Trainer.build_hooks``
checkpoint_converters
                    the model's class (its META_ARCHITECTURE)        ``SafeCheckpointer`` (every
                                                                     checkpoint it loads)
==================  ===============================================  ===========================

rtinst finds the method packages through the entry-point group ``rtinst.methods`` (``name =
package`` in a distribution's metadata): the repository's ``setup.py`` declares one for each
of its method packages, those of ``projects/<Name>/<package>/`` included, and a separately
installed package declares its own. ``import rtinst`` and ``get_cfg()`` import them all
(``load_methods``). rtinst's own shared parts (the COCO and YouTube-VIS evaluators, the robust
and video clip mappers, the training samplers, Detectron2's and FCOS's detection families, the
mask-IoU track association, Detectron2's LR schedulers and the look-forward one) are registered
the same way, under the name "rtinst".
"""
import importlib
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Callable, Dict, Mapping, Optional, Tuple

from .errors import ConfigError, MethodError

__all__ = ["ENTRY_POINT_GROUP", "METHODS", "Method", "add_method_configs",
           "class_count_keys", "find_part", "load_methods", "register_method"]

ENTRY_POINT_GROUP = "rtinst.methods"

# what register_method takes, by argument name: the singular used in messages
PART_KINDS = {
    "detection_families": "detection family",
    "evaluators": "evaluator",
    "dataset_mappers": "dataset mapper",
    "train_samplers": "training sampler",
    "export_pipelines": "export pipeline",
    "track_associations": "track association",
    "trackers": "tracker",
    "lr_schedulers": "LR scheduler",
    "training_hooks": "training hook",
    "checkpoint_converters": "checkpoint converter",
}


@dataclass(frozen=True)
class Method:
    """What one method package declares; see the module docstring for what each part is."""

    name: str
    module: str  # the module that called register_method
    add_config: Optional[Callable] = None
    # the config keys holding a head's class count ("MODEL.FCOS.NUM_CLASSES", ...)
    class_count_keys: Tuple[str, ...] = ()
    # {(config key, value): rtinst.benchmark.DetectionFamily}
    detection_families: Mapping[Tuple[str, str], object] = field(default_factory=dict)
    # {evaluator_type: build(cfg, dataset_name, output_folder) -> DatasetEvaluator}
    evaluators: Mapping[str, Callable] = field(default_factory=dict)
    # {INPUT.DATASET_MAPPER name: build(cfg, is_train) -> mapper}
    dataset_mappers: Mapping[str, Callable] = field(default_factory=dict)
    # {DATALOADER.SAMPLER_TRAIN name: build(cfg, dataset_dicts) -> epoch order (rng -> indices)}
    train_samplers: Mapping[str, Callable] = field(default_factory=dict)
    # {meta-architecture class name: pipeline class, e.g. rtinst.export.FixedSizePipeline}
    export_pipelines: Mapping[str, type] = field(default_factory=dict)
    # {MODEL.TRACKER.ASSOCIATION name: build(cfg) -> association(tracks, instances) -> matches}
    track_associations: Mapping[str, Callable] = field(default_factory=dict)
    # {MODEL.TRACKER.NAME: build(cfg) -> tracker}: a whole tracker, one per video, with
    # ``update(instances, frame_outputs) -> Instances with pred_ids`` (``rtinst.video.tracker``)
    trackers: Mapping[str, Callable] = field(default_factory=dict)
    # {SOLVER.LR_SCHEDULER_NAME: build(cfg, optimizer) -> LR scheduler (stepped every iteration)}
    lr_schedulers: Mapping[str, Callable] = field(default_factory=dict)
    # {name listed in SOLVER.HOOKS: build(cfg, trainer) -> detectron2.engine.HookBase}
    training_hooks: Mapping[str, Callable] = field(default_factory=dict)
    # {meta-architecture class name: convert(state_dict) -> state_dict}, e.g. another
    # implementation's checkpoints renamed to the model's keys (others returned as they are)
    checkpoint_converters: Mapping[str, Callable] = field(default_factory=dict)


METHODS: Dict[str, Method] = {}


def register_method(name: str, *, add_config: Optional[Callable] = None,
                    class_count_keys: Tuple[str, ...] = (),
                    detection_families: Optional[Mapping] = None,
                    evaluators: Optional[Mapping] = None,
                    dataset_mappers: Optional[Mapping] = None,
                    train_samplers: Optional[Mapping] = None,
                    export_pipelines: Optional[Mapping] = None,
                    track_associations: Optional[Mapping] = None,
                    trackers: Optional[Mapping] = None,
                    lr_schedulers: Optional[Mapping] = None,
                    training_hooks: Optional[Mapping] = None,
                    checkpoint_converters: Optional[Mapping] = None) -> Method:
    """Declares method ``name`` (called once, from its package's ``__init__``). A ``MethodError``
    when another method has that name or already declares one of the parts' names."""
    method = Method(
        name=name, module=sys._getframe(1).f_globals.get("__name__", "?"), add_config=add_config,
        class_count_keys=tuple(class_count_keys),
        detection_families=dict(detection_families or {}), evaluators=dict(evaluators or {}),
        dataset_mappers=dict(dataset_mappers or {}), train_samplers=dict(train_samplers or {}),
        export_pipelines=dict(export_pipelines or {}),
        track_associations=dict(track_associations or {}), trackers=dict(trackers or {}),
        lr_schedulers=dict(lr_schedulers or {}), training_hooks=dict(training_hooks or {}),
        checkpoint_converters=dict(checkpoint_converters or {}),
    )
    previous = METHODS.get(name)
    if previous is not None and previous.module != method.module:
        raise MethodError(f"two packages register a method named {name!r}: "
                          f"{previous.module} and {method.module}")
    for other in METHODS.values():
        if other.name == name:
            continue
        for kind, singular in PART_KINDS.items():
            shared = set(getattr(other, kind)) & set(getattr(method, kind))
            if shared:
                raise MethodError(f"method {name!r} ({method.module}) declares the {singular} "
                                  f"{sorted(shared)[0]!r}, which method {other.name!r} "
                                  f"({other.module}) already declares")
    METHODS[name] = method
    return method


def find_part(kind: str, name, config_key: str):
    """The part ``name`` of ``kind`` (a ``register_method`` argument, e.g. "dataset_mappers")
    that some method declares; a ``ConfigError`` naming ``config_key`` and the known names."""
    for method in METHODS.values():
        parts = getattr(method, kind)
        if name in parts:
            return parts[name]
    known = sorted(str(n) for m in METHODS.values() for n in getattr(m, kind))
    raise ConfigError(f"{config_key}: no {PART_KINDS[kind]} {name!r} is registered (known: "
                      f"{', '.join(known) or 'none'}); a method declares its own with "
                      f"rtinst.register_method({kind}=...)")


def class_count_keys():
    """Every registered method's class-count config keys, sorted."""
    return sorted({key for method in METHODS.values() for key in method.class_count_keys})


_LOADED = set()


def load_methods():
    """Imports every package of the entry-point group ``rtinst.methods`` not imported yet (each
    registers itself); a ``MethodError`` naming the entry point of one that fails to import."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.value in _LOADED:
            continue
        _LOADED.add(entry_point.value)
        try:
            importlib.import_module(entry_point.value)
        except Exception as e:
            _LOADED.discard(entry_point.value)
            raise MethodError(
                f"method package {entry_point.value!r} (entry point {entry_point.name!r} of "
                f"{ENTRY_POINT_GROUP}) failed to import: {type(e).__name__}: {e}"
            ) from e


def add_method_configs(cfg):
    """Applies every registered method's ``add_config`` to ``cfg`` (by method name). A
    ``MethodError`` for an entry point whose package registered no method."""
    registered = {m.module.partition(".")[0] for m in METHODS.values()}
    silent = sorted(p for p in _LOADED if p.partition(".")[0] not in registered)
    if silent:
        raise MethodError(f"{', '.join(silent)}: listed in the entry points {ENTRY_POINT_GROUP} "
                          "but registered no method (call rtinst.register_method in its "
                          "__init__)")
    for name in sorted(METHODS):
        if METHODS[name].add_config is not None:
            METHODS[name].add_config(cfg)
