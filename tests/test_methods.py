"""The method registry (rtinst/methods.py): what a method declares reaches get_cfg and the
loaders, clashes and unknown names are clear errors, broken plug-ins are named."""
from importlib.metadata import EntryPoint, entry_points

import numpy as np
import pytest
import torch

from detectron2.config import CfgNode as CN
from detectron2.data import MetadataCatalog
from rtinst import methods
from rtinst.config import get_cfg
from rtinst.data import build_dataset_mapper
from rtinst.data.train_loader import repeat_factor_epochs, shuffled_epochs
from rtinst.errors import ConfigError, MethodError
from rtinst.evaluation import build_evaluator
from rtinst.export import export_pipeline
from rtinst.methods import ENTRY_POINT_GROUP, METHODS, find_part, register_method


@pytest.fixture
def registry():
    """The registry as it is, restored after the test (whatever the test registers)."""
    saved, loaded = dict(METHODS), set(methods._LOADED)
    yield METHODS
    METHODS.clear()
    METHODS.update(saved)
    methods._LOADED.clear()
    methods._LOADED.update(loaded)


def _add_probe_config(cfg):
    cfg.MODEL.PROBE = CN({"SIZE": 3})


def test_the_installed_distribution_declares_the_three_methods():
    declared = {e.name: e.value for e in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"blendmask", "centermask", "blitzmask"} <= set(declared)
    assert {"blendmask", "centermask", "blitzmask", "rtinst"} <= set(METHODS)


def test_what_a_method_declares_reaches_get_cfg_and_the_loaders(registry):
    def probe_mapper(cfg, is_train):
        return ("probe mapper", is_train)

    register_method("probe", add_config=_add_probe_config,
                    dataset_mappers={"ProbeMapper": probe_mapper})
    cfg = get_cfg()
    assert cfg.MODEL.PROBE.SIZE == 3
    cfg.INPUT.DATASET_MAPPER = "ProbeMapper"
    assert build_dataset_mapper(cfg, is_train=False) == ("probe mapper", False)
    assert METHODS["probe"].module == __name__


def test_two_methods_cannot_declare_the_same_part(registry):
    with pytest.raises(MethodError, match="'RobustDatasetMapper'.*method 'rtinst'"):
        register_method("probe", dataset_mappers={"RobustDatasetMapper": object})
    assert "probe" not in METHODS


def test_unknown_names_are_config_errors_naming_the_key_and_the_known_names():
    cfg = get_cfg()
    cfg.INPUT.DATASET_MAPPER = "NoSuchMapper"
    with pytest.raises(ConfigError, match=r"INPUT.DATASET_MAPPER: no dataset mapper "
                                          r"'NoSuchMapper'.*known: RobustDatasetMapper"):
        build_dataset_mapper(cfg, is_train=True)
    with pytest.raises(ConfigError, match="DATALOADER.SAMPLER_TRAIN.*RepeatFactorTrainingSampler"):
        find_part("train_samplers", "NoSuchSampler", "DATALOADER.SAMPLER_TRAIN")
    with pytest.raises(ConfigError, match="MODEL.META_ARCHITECTURE: no export pipeline 'Linear'"):
        export_pipeline(torch.nn.Linear(2, 2), 64, 64)


def test_a_dataset_evaluates_with_the_evaluator_of_its_type(registry, tmp_path):
    MetadataCatalog.get("probe_videos").set(evaluator_type="probe_vis")
    with pytest.raises(ConfigError, match="dataset probe_videos: evaluator_type: no evaluator "
                                          "'probe_vis'.*known: coco"):
        build_evaluator(get_cfg(), "probe_videos", str(tmp_path))
    register_method("probe", evaluators={"probe_vis": lambda cfg, name, folder: (name, folder)})
    assert build_evaluator(get_cfg(), "probe_videos", str(tmp_path)) == ("probe_videos",
                                                                         str(tmp_path))


def test_a_plugin_that_fails_to_import_is_named(registry, monkeypatch):
    broken = EntryPoint(name="broken", value="no_such_rtinst_plugin", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(methods, "entry_points", lambda group: [broken])
    with pytest.raises(MethodError, match="'no_such_rtinst_plugin' \\(entry point 'broken'.*"
                                          "ModuleNotFoundError"):
        methods.load_methods()


def test_a_plugin_that_registers_nothing_is_named(registry, monkeypatch):
    silent = EntryPoint(name="silent", value="colorsys", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(methods, "entry_points", lambda group: [silent])
    with pytest.raises(MethodError, match="colorsys: listed in the entry points.*registered no"):
        get_cfg()


def _records(category_ids_per_image):
    return [{"annotations": [{"category_id": c} for c in ids]} for ids in category_ids_per_image]


def test_training_sampler_epochs_are_permutations():
    epoch = shuffled_epochs(get_cfg(), _records([[0]] * 7))
    order = epoch(np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(7)) and order.tolist() != list(range(7))


def test_repeat_factor_epochs_repeat_rare_images_by_sqrt_t_over_f():
    # category 1 is in 1 of 10 images (f = 0.1); with t = 0.4 its image repeats sqrt(4) = 2 times,
    # category 0's (f = 0.9 > t) once
    cfg = get_cfg()
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.4
    epoch = repeat_factor_epochs(cfg, _records([[0]] * 9 + [[1]]))
    order = epoch(np.random.default_rng(0))
    assert np.bincount(order).tolist() == [1] * 9 + [2]
    # t = 0.25: factor sqrt(2.5) = 1.58, so 1 or 2 copies, 1.58 on average
    cfg.DATALOADER.REPEAT_THRESHOLD = 0.25
    epoch = repeat_factor_epochs(cfg, _records([[0]] * 9 + [[1]]))
    rng = np.random.default_rng(0)
    copies = [np.bincount(epoch(rng), minlength=10)[9] for _ in range(2000)]
    assert set(copies) == {1, 2} and np.mean(copies) == pytest.approx(2.5**0.5, abs=0.03)
