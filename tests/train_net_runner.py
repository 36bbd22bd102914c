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
