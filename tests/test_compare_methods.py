"""tools/compare_methods.py: reading the final evaluation of each run and the table."""
import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "compare_methods.py"
spec = importlib.util.spec_from_file_location("compare_methods", TOOL)
compare_methods = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_methods)


def write_metrics(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def test_final_results_are_the_last_evaluation(tmp_path):
    write_metrics(tmp_path, [
        {"iteration": 19, "total_loss": 2.0},
        {"iteration": 99, "bbox/AP": 10.0, "bbox/AP50": 20.0, "segm/AP": 9.0},
        {"iteration": 199, "total_loss": 1.0},
        {"iteration": 199, "bbox/AP": 30.0, "bbox/AP50": 50.0, "segm/AP": 25.0,
         "segm/AP50": 45.0, "segm/AP75": 20.0},
    ])
    results = compare_methods.final_results(tmp_path)
    assert results == {"bbox": {"AP": 30.0, "AP50": 50.0},
                       "segm": {"AP": 25.0, "AP50": 45.0, "AP75": 20.0}}


def test_a_run_without_evaluation_is_a_clear_error(tmp_path):
    write_metrics(tmp_path, [{"iteration": 19, "total_loss": 2.0}])
    with pytest.raises(RuntimeError, match="no evaluation"):
        compare_methods.final_results(tmp_path)


def test_table_and_run_names():
    assert compare_methods.run_name("configs/BlendMask/MNV2_FPN_shapes.yaml") == \
        "BlendMask_MNV2_FPN_shapes"
    table = compare_methods.markdown_table([
        {"config": "a.yaml", "seconds": 61.0, "bbox": {"AP": 30.0, "AP50": 50.0}},
        {"config": "b.yaml", "seconds": 62.0, "bbox": {"AP": 31.0, "AP50": 51.0},
         "segm": {"AP": 25.0, "AP50": 45.0, "AP75": 20.0}},
    ]).splitlines()
    assert table[2] == "| a.yaml | 30.0 | 50.0 | – | – | – | 61.0 |"
    assert table[3] == "| b.yaml | 31.0 | 51.0 | 25.0 | 45.0 | 20.0 | 62.0 |"
