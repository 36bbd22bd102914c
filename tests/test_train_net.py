"""train_net.py end to end on the embedded shapes data: training, exact resume after a kill,
2-process gloo data parallelism, --eval-only, clear config errors, DefaultPredictor."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from payloads import CreatesFile
from train_net_runner import ROOT, read_metrics, run_train_net

CONFIG = ROOT / "configs/FCOS/MNV2_FPN_shapes.yaml"
# a small, fast variant of the main job
TINY = [
    "INPUT.MIN_SIZE_TRAIN", "(128,160)", "INPUT.MAX_SIZE_TRAIN", "224",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "224",
    "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1", "MODEL.FCOS.NUM_BOX_CONVS", "1",
    "SOLVER.IMS_PER_BATCH", "4", "SOLVER.WARMUP_ITERS", "2", "SOLVER.BASE_LR", "0.01",
    "DATALOADER.NUM_WORKERS", "1", "SEED", "7", "DATASETS.TEST", "()",
]


def train_net(*args, check=True, **kwargs):
    return run_train_net(CONFIG, *args, check=check, **kwargs)


def final_state(out_dir):
    return torch.load(Path(out_dir) / "model_final.pth", weights_only=True)


@pytest.mark.slow
def test_training_makes_the_loss_fall(tmp_path):
    out = tmp_path / "run"
    train_net(*TINY, "SOLVER.MAX_ITER", "60", "SOLVER.STEPS", "()", "OUTPUT_DIR", str(out))
    losses = [m["total_loss"] for m in read_metrics(out) if "total_loss" in m]
    assert len(losses) >= 3
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses


@pytest.mark.slow
def test_resume_after_kill_continues_exactly(tmp_path):
    schedule = ["SOLVER.MAX_ITER", "16", "SOLVER.STEPS", "(8, 12)", "SOLVER.CHECKPOINT_PERIOD", "3"]
    uninterrupted, interrupted = tmp_path / "a", tmp_path / "b"
    train_net(*TINY, *schedule, "OUTPUT_DIR", str(uninterrupted))

    cmd = [sys.executable, str(ROOT / "train_net.py"), "--config-file", str(CONFIG),
           *TINY, *schedule, "OUTPUT_DIR", str(interrupted)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tag = interrupted / "last_checkpoint"
    deadline = time.time() + 300
    while not tag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training ended before it could be killed"
    assert not (interrupted / "model_final.pth").exists()

    resumed = train_net("--resume", *TINY, *schedule, "OUTPUT_DIR", str(interrupted))
    started = re.search(r"Starting training from iteration (\d+)", resumed.stdout + resumed.stderr)
    assert started and int(started.group(1)) > 0, "--resume did not continue from a checkpoint"

    a, b = final_state(uninterrupted), final_state(interrupted)
    assert a["iteration"] == b["iteration"] == 15
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)
    torch.testing.assert_close(
        a["trainer"]["_trainer"]["optimizer"], b["trainer"]["_trainer"]["optimizer"], rtol=0, atol=0
    )
    lr_a = {m["iteration"]: m["lr"] for m in read_metrics(uninterrupted) if "lr" in m}
    lr_b = {m["iteration"]: m["lr"] for m in read_metrics(interrupted) if "lr" in m}
    assert lr_b and all(lr_b[i] == lr_a[i] for i in lr_b if i in lr_a)
    assert lr_a[15] == pytest.approx(0.01 * 0.1 * 0.1)


@pytest.mark.ddp
def test_two_process_gloo_data_parallel(tmp_path):
    """train_net.py --num-gpus 2 on the CPU: two gloo workers train to the end (the value check,
    one worker against two: test_data_parallel.py)."""
    out = tmp_path / "ddp"
    res = train_net("--num-gpus", "2", *TINY, "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "()",
                    "OUTPUT_DIR", str(out), timeout=600)
    log = res.stdout + res.stderr
    assert "World size: 2" in log
    assert final_state(out)["iteration"] == 3


@pytest.mark.slow
def test_eval_only_prints_box_ap(tmp_path):
    out = tmp_path / "run"
    train_net(*TINY, "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "OUTPUT_DIR", str(out))
    res = train_net("--eval-only", *TINY, "DATASETS.TEST", "('shapes_val',)",
                    "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(out))
    log = res.stdout + res.stderr
    assert "Evaluation results for shapes_val" in log
    assert "evaluating the model optimised for inference" in log  # as the Predictor, on CPU
    header, values = [line.split("copypaste: ")[1] for line in log.splitlines() if "copypaste: " in line][1:3]
    assert header == "AP,AP50,AP75,APs,APm,APl"
    assert all(0.0 <= float(v) <= 100.0 for v in values.split(","))


@pytest.mark.slow
def test_unknown_config_key_in_a_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{CONFIG}"\nMODEL:\n  FCOS:\n    NUM_CLASES: 3\n')
    res = run_train_net(bad, check=False)
    assert res.returncode != 0
    assert "bad.yaml" in res.stderr and "MODEL.FCOS.NUM_CLASES" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_flag_after_the_overrides_is_a_clear_error():
    res = train_net("SOLVER.MAX_ITER", "2", "--resume", check=False)
    assert res.returncode != 0
    assert "--resume" in res.stderr and "before" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_missing_weights_in_eval_only_is_a_clear_error(tmp_path):
    res = train_net("--eval-only", "MODEL.WEIGHTS", str(tmp_path / "nope.pth"), check=False)
    assert res.returncode != 0
    assert "checkpoint file not found" in res.stderr and "nope.pth" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_unknown_command_line_key_is_a_clear_error():
    res = train_net("MODEL.FCOS.NMS_THRESH", "0.5", check=False)
    assert res.returncode != 0
    assert "command-line option" in res.stderr and "MODEL.FCOS.NMS_THRESH" in res.stderr
    assert "Traceback" not in res.stderr


def test_default_predictor_on_an_image():
    import rtinst  # noqa: F401
    from detectron2.engine import DefaultPredictor
    from rtinst.engine import load_config

    cfg = load_config(str(CONFIG), TINY)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0  # untrained head: keep every candidate
    image = np.random.default_rng(0).integers(0, 255, (150, 210, 3), dtype=np.uint8)
    out = DefaultPredictor(cfg)(image)["instances"]
    assert out.image_size == (150, 210)
    assert len(out) > 0
    boxes = out.pred_boxes.tensor
    assert (boxes[:, 2] <= 210).all() and (boxes[:, 3] <= 150).all()
    assert out.scores.shape == out.pred_classes.shape == (len(out),)


def _processes_mentioning(text):
    """Pids of the live processes whose command line contains ``text`` (data-loader workers are
    forks of the trainer: they share its command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("signum, whole_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigterm"])
def test_an_interruption_saves_the_iteration_and_resume_continues_exactly(
    tmp_path, signum, whole_group
):
    """Ctrl-C reaches the trainer and its data-loader workers (the terminal's process group),
    SIGTERM the trainer only; either way the iteration under way is saved, the process exits
    cleanly with 128 + the signal, no worker is left behind, and --resume ends with the weights
    of an uninterrupted run."""
    schedule = ["SOLVER.MAX_ITER", "12", "SOLVER.STEPS", "(6, 9)", "SOLVER.CHECKPOINT_PERIOD", "1000",
                "DATALOADER.NUM_WORKERS", "2"]
    uninterrupted, interrupted = tmp_path / "a", tmp_path / "b"
    train_net(*TINY, *schedule, "OUTPUT_DIR", str(uninterrupted))

    cmd = [sys.executable, str(ROOT / "train_net.py"), "--config-file", str(CONFIG),
           *TINY, *schedule, "SOLVER.WARMUP_ITERS", "2", "OUTPUT_DIR", str(interrupted)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    for line in proc.stdout:  # Detectron2 logs to stdout
        if "Starting training from iteration" in line:
            break
    time.sleep(1.5)  # a few iterations in
    (os.killpg if whole_group else os.kill)(proc.pid, signum)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 128 + signum, stderr[-2000:]
    stopped = re.search(r"stopped after iteration (\d+), saved (\S+\.pth)", stderr)
    assert stopped, stderr[-2000:]
    iteration, checkpoint = int(stopped.group(1)), Path(stopped.group(2))
    assert iteration < 11 and checkpoint == interrupted / f"model_{iteration:07d}.pth"
    assert torch.load(checkpoint, weights_only=True)["iteration"] == iteration
    assert (interrupted / "last_checkpoint").read_text() == checkpoint.name
    assert "Traceback" not in stderr
    time.sleep(1)
    assert _processes_mentioning(str(interrupted)) == [], "processes left behind"

    resumed = train_net("--resume", *TINY, *schedule, "SOLVER.WARMUP_ITERS", "2",
                        "OUTPUT_DIR", str(interrupted))
    started = re.search(r"Starting training from iteration (\d+)", resumed.stdout + resumed.stderr)
    assert started and int(started.group(1)) == iteration + 1
    a, b = final_state(uninterrupted), final_state(interrupted)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_resume_without_a_checkpoint_warns_naming_the_folder(tmp_path):
    out = tmp_path / "fresh"
    res = train_net("--resume", *TINY, "SOLVER.MAX_ITER", "1", "SOLVER.STEPS", "()",
                    "OUTPUT_DIR", str(out))
    assert f"no checkpoint to resume from in {out}" in res.stdout + res.stderr


@pytest.mark.slow
def test_eval_only_leaves_a_training_folder_alone_unless_told_to_write_there(tmp_path):
    out = tmp_path / "run"
    train_net(*TINY, "SOLVER.MAX_ITER", "1", "SOLVER.STEPS", "()", "OUTPUT_DIR", str(out))
    before = {f: (out / f).read_bytes() for f in ("config.yaml", "log.txt", "metrics.json")}
    config = tmp_path / "fixed_output.yaml"
    config.write_text(f'_BASE_: "{CONFIG}"\nOUTPUT_DIR: "{out}"\n')
    res = run_train_net(config, "--eval-only", *TINY, "DATASETS.TEST", "('shapes_val',)",
                        "INPUT.MIN_SIZE_TEST", "64", "MODEL.WEIGHTS", str(out / "model_final.pth"))
    assert f"{out} holds a training run; writing to {out}/eval_" in res.stderr
    assert {f: (out / f).read_bytes() for f in before} == before
    (evaluation,) = out.glob("eval_*")
    assert (evaluation / "config.yaml").exists()


@pytest.fixture(scope="module")
def three_class_coco(tmp_path_factory):
    """A COCO-format dataset of three classes (a user's own data): the shapes images, with the
    circles, rectangles and triangles annotated."""
    from rtinst.data import ensure_generated

    root = Path(ensure_generated())
    coco = json.loads((root / "annotations/val.json").read_text())
    kept = {c["id"]: c for c in coco["categories"][:3]}
    coco["categories"] = list(kept.values())
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] in kept]
    coco["images"] = coco["images"][:40]
    json_file = tmp_path_factory.mktemp("mine") / "mine.json"
    json_file.write_text(json.dumps(coco))
    return json_file, root / "val"


HEADS = {  # what a head's class count sets: {key in the state dict: outputs}
    "blendmask": {"proposal_generator.fcos_head.cls_logits.weight": 3,
                  "basis_module.seg_head.6.weight": 4},  # + background
    "centermask": {"proposal_generator.fcos_head.cls_logits.weight": 3,
                   "roi_heads.mask_head.predictor.weight": 3,
                   "roi_heads.maskiou_head.maskiou.weight": 3},
}


@pytest.mark.slow
@pytest.mark.parametrize("method, config", [("blendmask", "BlendMask/MNV2_FPN_shapes.yaml"),
                                            ("centermask", "CenterMask/MNV2_FPN_shapes.yaml")])
def test_the_readme_own_data_example_trains_heads_of_the_datasets_class_count(
    tmp_path, three_class_coco, method, config
):
    json_file, images = three_class_coco
    out = tmp_path / method
    res = run_train_net(ROOT / "configs" / config, "--dataset", f"mine_train={json_file},{images}",
                        "--dataset", f"mine_val={json_file},{images}", *TINY,
                        "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "SOLVER.IMS_PER_BATCH", "2",
                        "OUTPUT_DIR", str(out),
                        "DATASETS.TRAIN", "('mine_train',)", "DATASETS.TEST", "('mine_val',)")
    assert "Evaluation results for mine_val" in res.stdout + res.stderr
    model = final_state(out)["model"]
    assert {k: model[k].shape[0] for k in HEADS[method]} == HEADS[method]


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["training", "eval-only", "proposal-file", "config-file"])
def test_a_payload_that_would_create_a_file_is_refused(tmp_path, entry):
    import pickle

    target = tmp_path / "created"
    evil_pkl = tmp_path / "evil.pkl"
    evil_pkl.write_bytes(pickle.dumps({"model": {"w": CreatesFile(target)}, "__author__": "x"}))
    opts = [*TINY, "SOLVER.MAX_ITER", "1", "SOLVER.STEPS", "()", "OUTPUT_DIR", str(tmp_path / "o")]
    config = CONFIG
    if entry == "training":
        args = [*opts, "MODEL.WEIGHTS", str(evil_pkl)]
    elif entry == "eval-only":
        args = ["--eval-only", *opts, "MODEL.WEIGHTS", str(evil_pkl)]
    elif entry == "proposal-file":
        evil_pkl.write_bytes(pickle.dumps({"ids": [CreatesFile(target)]}))
        args = ["--eval-only", *opts, "DATASETS.TEST", "('shapes_val',)", "MODEL.LOAD_PROPOSALS",
                "True", "DATASETS.PROPOSAL_FILES_TEST", f"('{evil_pkl}',)"]
    else:
        config = tmp_path / "evil.yaml"
        config.write_text(f'_BASE_: "{CONFIG}"\nOUTPUT_DIR: !!python/object/apply:open '
                          f'["{target}", "w"]\n')
        args = opts
    res = run_train_net(config, *args, check=False)
    assert res.returncode != 0
    assert not target.exists()
    assert "error:" in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert ("refusing" in res.stderr) and (str(evil_pkl) in res.stderr or "evil.yaml" in res.stderr)


@pytest.mark.slow
def test_a_bad_video_dataset_fails_before_the_model_is_built(tmp_path):
    """A YouTube-VIS file whose ``length`` is not its number of frames: one line naming the file,
    before the environment, config and model dumps."""
    frames = tmp_path / "frames"
    frames.mkdir()
    names = []
    for t in range(2):
        names.append(f"{t:05d}.jpg")
        (frames / names[-1]).write_bytes(b"")  # existence is what loading checks
    (tmp_path / "bad.json").write_text(json.dumps({
        "videos": [{"id": 1, "height": 8, "width": 8, "length": 3, "file_names": names}],
        "annotations": [], "categories": [{"id": 1, "name": "thing"}]}))
    result = train_net("--video-dataset", f"bad_videos={tmp_path / 'bad.json'},{frames}",
                       "--eval-only", "DATASETS.TRAIN", "()", "DATASETS.TEST", "('bad_videos',)",
                       "OUTPUT_DIR", str(tmp_path / "out"), check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"error: {tmp_path / 'bad.json'}: video 1 says length 3 but lists 2 "
                    "file_names"), result.stderr
    assert "Model:" not in result.stderr + result.stdout and not (tmp_path / "out").exists()
