#!/usr/bin/env bash
# YolactEdge's keyframe speed-up where a GPU is lent: YOLACT R-101-FPN against YolactEdge
# R-101-FPN (a keyframe every 5 frames, P4/P5 warped) at 550 x 550, random weights, each frame's
# time through the video path (model + tracker), in one process, interleaved; JSON and Markdown
# to $OUT (default .). The slides' bar: 1.6x on a Jetson AGX without TensorRT.
#
# On the GPU machine (no network; its own CUDA torch): first
#   bash scripts/setup.sh --offline WHEELHOUSE --system-torch
# (WHEELHOUSE made by scripts/make_wheelhouse.sh and carried along)
# then: bash projects/YOLACT/tools/gpu_keyframe_speedup.sh
# Tried here on the CPU: DEVICE=cpu ITERS=5 bash projects/YOLACT/tools/gpu_keyframe_speedup.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-.}
"${PYTHON:-.venv/bin/python}" tools/benchmark.py \
  --config-file configs/YOLACT/yolact_R_101_550.yaml configs/YolactEdge/yolactedge_R_101_550.yaml \
  --baseline none --video --device "${DEVICE:-cuda}" --input-size 550x550 \
  --images "${IMAGES:-../shared/data/coco_train2017_mini/train2017}" --num-images 10 \
  --iters "${ITERS:-100}" --num-detections 10 \
  --json "$out/yolactedge_gpu_speedup.json" --markdown "$out/yolactedge_gpu_speedup.md"
