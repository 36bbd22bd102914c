#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): set-up, every test, then the golden tests a
# second time with the CPU kernels capped one instruction set lower (AVX2 on an AVX-512 CPU,
# SSE4.1 on an AVX2 one), so both rounding paths of oneDNN, PyTorch and MKL are exercised on
# whatever machine it runs (docs/testing.md).
# The quick tier for yourself: .venv/bin/python -m pytest -q -m "not slow and not ddp"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q --durations=25
if grep -q -w avx512f /proc/cpuinfo 2>/dev/null; then
  caps=(ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2)
else
  caps=(ONEDNN_MAX_CPU_ISA=SSE41 ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2)
fi
echo "golden tests again with ${caps[*]}"
env "${caps[@]}" .venv/bin/python -m pytest -q tests/test_reference_golden.py \
  tests/test_golden_outputs.py tests/test_yolact_reference.py tests/test_yolact_edge_reference.py
