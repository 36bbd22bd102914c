"""Config files and options: nothing in them runs code, every mistake is one ``ConfigError``
naming the file or key, and one class count, taken from the data, reaches every head."""
import json

import pytest
from detectron2.data import MetadataCatalog

from rtinst.config import get_cfg, set_class_count
from rtinst.data import register_coco_dataset
from rtinst.engine import load_config
from rtinst.engine.defaults import check_schedule
from rtinst.errors import ConfigError
from rtinst.methods import class_count_keys
from train_net_runner import ROOT

SHAPES_FCOS = str(ROOT / "configs/FCOS/MNV2_FPN_shapes.yaml")
CLASS_COUNT_KEYS = ["MODEL.BASIS_MODULE.NUM_CLASSES", "MODEL.BLITZMASK.NUM_CLASSES",
                    "MODEL.FCOS.NUM_CLASSES", "MODEL.MOBILEINST.NUM_CLASSES",
                    "MODEL.RETINANET.NUM_CLASSES",
                    "MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.YOLACT.NUM_CLASSES"]


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return str(path)


def _counts(cfg):
    return {k: eval(f"cfg.{k}", {"cfg": cfg}) for k in CLASS_COUNT_KEYS}  # noqa: S307 (test)


@pytest.mark.parametrize("inherited", [False, True])
def test_a_yaml_tag_that_would_create_a_file_is_refused(tmp_path, inherited):
    target = tmp_path / "created"
    evil = _write(tmp_path, "evil.yaml",
                  f"MODEL:\n  WEIGHTS: !!python/object/apply:open ['{target}', 'w']\n")
    config = _write(tmp_path, "child.yaml", "_BASE_: evil.yaml\n") if inherited else evil
    with pytest.raises(ConfigError, match=r"evil.yaml.*line 2: refusing the YAML tag "
                                          r"'tag:yaml.org,2002:python/object/apply:open'"):
        load_config(config)
    assert not target.exists()


def test_a_base_cycle_names_the_files(tmp_path):
    a = _write(tmp_path, "a.yaml", "_BASE_: b.yaml\n")
    _write(tmp_path, "b.yaml", "_BASE_: [c.yaml]\n")
    _write(tmp_path, "c.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"_BASE_ cycle: .*a.yaml -> .*b.yaml -> .*c.yaml -> "
                                          r".*a.yaml$"):
        load_config(a)


@pytest.mark.parametrize("text, message", [
    ("MODEL: [\n", r"bad.yaml is not valid YAML: while parsing"),
    ("- a\n- b\n", r"bad.yaml: expected KEY: VALUE mappings, found a list"),
    ("_BASE_: 3\n", r"bad.yaml: _BASE_ must name files, found 3"),
    ("MODEL:\n  FCOS:\n    NUM_CLASSES: many\n", r"bad.yaml \(or a _BASE_ it inherits\)"),
])
def test_malformed_config_files_are_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, "bad.yaml", text))


def test_a_missing_base_names_the_inheriting_file(tmp_path):
    with pytest.raises(ConfigError, match=r"child.yaml: inherited config file not found: "
                                          r".*gone.yaml"):
        load_config(_write(tmp_path, "child.yaml", "_BASE_: gone.yaml\n"))


def test_detectron2_model_zoo_configs_load_safely():
    cfg = load_config("zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml")
    sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
    assert len(sizes) == 5 and sizes[0] == pytest.approx([32, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)])


@pytest.mark.parametrize("device, message", [
    ("cuda", "MODEL.DEVICE cuda: no CUDA device on this machine"),
    ("tpu", "MODEL.DEVICE 'tpu': not a device"),
])
def test_an_unavailable_device_is_a_config_error(device, message):
    pytest.importorskip("torch").cuda.is_available() and device == "cuda" and pytest.skip("GPU")
    with pytest.raises(ConfigError, match=message):
        load_config(SHAPES_FCOS, ["MODEL.DEVICE", device])


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER must be positive, got 0"),
    (["SOLVER.IMS_PER_BATCH", "0"], "SOLVER.IMS_PER_BATCH must be positive"),
    (["SOLVER.STEPS", "(700, 600)"], r"SOLVER.STEPS must strictly increase, got \(700, 600\)"),
])
def test_impossible_schedules_are_config_errors(opts, message):
    with pytest.raises(ConfigError, match=message):
        check_schedule(load_config(SHAPES_FCOS, opts))


def test_steps_at_or_after_the_end_are_left_out():
    cfg = load_config(SHAPES_FCOS, ["SOLVER.MAX_ITER", "600"])  # STEPS (600, 730)
    assert check_schedule(cfg) == ()
    assert check_schedule(load_config(SHAPES_FCOS)) == (600, 730)


def test_every_method_declares_its_class_count_key():
    assert class_count_keys() == CLASS_COUNT_KEYS


@pytest.fixture
def three_class_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    categories = [{"id": 7, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "cow"}]
    json_file = tmp_path / "mine.json"
    json_file.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    name = f"mine_{tmp_path.name}"
    register_coco_dataset(name, str(json_file), str(tmp_path / "images"))
    return name


def test_a_class_count_set_against_the_dataset_names_keys_and_dataset(three_class_dataset):
    name = three_class_dataset
    with pytest.raises(ConfigError, match=rf"MODEL.FCOS.NUM_CLASSES 6: dataset '{name}' has 3 "
                                          r"classes \(dog, cow, cat\)"):
        load_config(SHAPES_FCOS, ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
                                  "MODEL.FCOS.NUM_CLASSES", "6"])


def test_the_datasets_class_count_reaches_every_head(three_class_dataset):
    name = three_class_dataset
    cfg = load_config(str(ROOT / "configs/BlendMask/R_50_1x.yaml"),
                      ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)"])
    assert set(_counts(cfg).values()) == {3}
    assert MetadataCatalog.get(name).thing_classes == ["dog", "cow", "cat"]  # sorted by id


def test_train_and_test_datasets_with_different_class_counts_are_refused(three_class_dataset):
    with pytest.raises(ConfigError, match=rf"DATASETS.TRAIN '{three_class_dataset}': 3, "
                                          r"DATASETS.TEST 'coco_2017_val': 80"):
        load_config(str(ROOT / "configs/BlendMask/R_50_1x.yaml"),
                    ["DATASETS.TRAIN", f"('{three_class_dataset}',)"])


def test_without_a_dataset_the_one_value_set_reaches_every_head():
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 4
    set_class_count(cfg)
    assert set(_counts(cfg).values()) == {4}
    cfg.MODEL.FCOS.NUM_CLASSES = 5
    with pytest.raises(ConfigError, match="class counts differ: .*MODEL.FCOS.NUM_CLASSES 5.*"
                                          "MODEL.ROI_HEADS.NUM_CLASSES 4"):
        set_class_count(cfg)
