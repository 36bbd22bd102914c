"""tools/compare_methods.py: reading the final evaluation of each run and the table."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "compare_methods.py"
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


OPTS = ["SEED", "0", "SOLVER.MAX_ITER", "4"]
EVALUATED = [{"iteration": 3, "bbox/AP": 30.0, "segm/AP": 25.0}]


def fake_train_net(calls, metrics):
    """Stands in for subprocess.run: records the command and writes ``metrics`` where
    train_net.py would."""
    def run(cmd, cwd, check):
        calls.append(cmd)
        write_metrics(Path(cmd[cmd.index("OUTPUT_DIR") + 1]), metrics)
    return run


def test_each_result_is_saved_and_reused_on_resume(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(compare_methods.subprocess, "run", fake_train_net(calls, EVALUATED))
    configs = [str(ROOT / "configs/Mask-RCNN/MNV2_FPN_shapes.yaml"),
               str(ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml")]
    args = ["--output", str(tmp_path), "--json", str(tmp_path / "all.json"),
            "--config-file", *configs, "--opts", *OPTS]
    compare_methods.main(args)
    assert len(calls) == 2 and all("--resume" not in c for c in calls)
    first = json.loads((tmp_path / "all.json").read_text())
    saved = json.loads((tmp_path / "Mask-RCNN_MNV2_FPN_shapes" / "result.json").read_text())
    assert saved == first[0] and saved["opts"] == OPTS and saved["segm"] == {"AP": 25.0}

    # interrupted while training BlendMask: its result is lost, a checkpoint is left
    (tmp_path / "BlendMask_MNV2_FPN_shapes" / "result.json").unlink()
    (tmp_path / "BlendMask_MNV2_FPN_shapes" / "last_checkpoint").write_text("model_0000001.pth")
    calls.clear()
    compare_methods.main(["--resume", *args])
    assert len(calls) == 1 and "--resume" in calls[0] and configs[1] in calls[0]
    rows = json.loads((tmp_path / "all.json").read_text())
    assert rows[0] == first[0]  # reused, with its wall time
    assert rows[1]["seconds"] is None  # a continued run's time is not a whole training's


def test_resume_refuses_a_result_made_with_other_overrides(tmp_path, monkeypatch):
    monkeypatch.setattr(compare_methods.subprocess, "run", fake_train_net([], EVALUATED))
    config = str(ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml")
    compare_methods.main(["--output", str(tmp_path), "--config-file", config, "--opts", *OPTS])
    with pytest.raises(SystemExit, match="result.json.*SOLVER.MAX_ITER"):
        compare_methods.main(["--resume", "--output", str(tmp_path), "--config-file", config,
                              "--opts", "SEED", "1"])


def test_resume_refuses_a_folder_trained_with_an_edited_config(tmp_path, monkeypatch):
    from rtinst.engine import load_config

    calls = []
    monkeypatch.setattr(compare_methods.subprocess, "run", fake_train_net(calls, EVALUATED))
    config = str(ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml")
    args = ["--output", str(tmp_path), "--config-file", config, "--opts", *OPTS]
    compare_methods.main(args)
    folder = tmp_path / "BlendMask_MNV2_FPN_shapes"
    trained = load_config(config, [*OPTS, "OUTPUT_DIR", str(folder)])
    (folder / "config.yaml").write_text(trained.dump())
    compare_methods.main(["--resume", *args])  # the same settings: the result is reused
    assert len(calls) == 1

    trained.MODEL.BLENDMASK.ATTN_SIZE = 7  # the config file was edited since
    (folder / "config.yaml").write_text(trained.dump())
    with pytest.raises(SystemExit, match="MODEL.BLENDMASK.ATTN_SIZE: 7 -> 14"):
        compare_methods.main(["--resume", *args])
    assert len(calls) == 1
