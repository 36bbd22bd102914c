"""What a committed benchmark records about where and from what it ran."""
import os
import platform
import subprocess
from pathlib import Path

ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def machine_info():
    """The CPU's name, its widest vector instruction set, the cores and any ISA cap in force."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = info.split()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), platform.machine())
    isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "older"
    return {"cpu": model, "widest_isa": isa, "cores": os.cpu_count(),
            "caps": {k: os.environ[k] for k in ISA_CAPS if k in os.environ}}


def git_commit(folder="."):
    """The commit checked out in ``folder`` ("+dirty" with uncommitted changes), or None."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=folder, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")
