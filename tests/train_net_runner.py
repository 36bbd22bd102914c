"""Running train_net.py as a user does (a subprocess) and reading what it wrote."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train_net(config, *args, check=True, **kwargs):
    """``train_net.py --config-file config *args`` from the repository root, output captured."""
    cmd = [sys.executable, str(ROOT / "train_net.py"), "--config-file", str(config), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=check, **kwargs)


def read_metrics(out_dir):
    """The records of ``out_dir``/metrics.json, oldest first."""
    lines = (Path(out_dir) / "metrics.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


# a short, small training run of an FCOS-based shapes config: 60 iterations of 4 images at
# 128-160 px, with a 64-channel FPN and one conv per FCOS tower
SHORT_SHAPES_RUN = (
    "INPUT.MIN_SIZE_TRAIN", "(128,160)", "INPUT.MAX_SIZE_TRAIN", "224",
    "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1", "SOLVER.IMS_PER_BATCH", "4",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.MAX_ITER", "60", "SOLVER.STEPS", "()",
    "DATALOADER.NUM_WORKERS", "1", "SEED", "3", "DATASETS.TEST", "()",
)


def losses_not_falling(config, out_dir, losses, *opts):
    """Trains ``config`` for ``SHORT_SHAPES_RUN`` (plus ``opts``) into ``out_dir`` and returns
    {loss: (first logged value, last)} for each of ``losses`` that did not fall."""
    run_train_net(config, *SHORT_SHAPES_RUN, *opts, "OUTPUT_DIR", str(out_dir))
    records = [r for r in read_metrics(out_dir) if all(k in r for k in losses)]
    assert len(records) >= 3, f"too few logged iterations in {out_dir}/metrics.json"
    first, last = records[0], records[-1]
    return {k: (first[k], last[k]) for k in losses if not last[k] < first[k]}
