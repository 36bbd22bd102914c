#!/usr/bin/env bash
# YolactEdge's keyframe speed-up where a GPU is lent: YOLACT R-101-FPN against YolactEdge
# R-101-FPN (a keyframe every 5 frames, P4/P5 warped) at 550 x 550, random weights, each frame's
# time through the video path (model + tracker), in one process, interleaved; JSON and Markdown
# to $OUT (default .). The slides' bar: 1.6x on a Jetson AGX without TensorRT.
#
# On the GPU machine (no network; its own CUDA torch): first
#   bash scripts/setup.sh --offline WHEELHOUSE --system-torch
# (WHEELHOUSE made by scripts/make_wheelhouse.sh and carried along), then
#   bash projects/YOLACT/tools/gpu_keyframe_speedup.sh
# On the CPU (as measured here, with ONNX Runtime too):
#   DEVICE=cpu ITERS=20 EXTRA="--onnx --threads 2" OUT=out \
#       bash projects/YOLACT/tools/gpu_keyframe_speedup.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-.}
python=${PYTHON:-.venv/bin/python}
photo=${PHOTO:-../shared/data/coco_train2017_mini/train2017/000000000790.jpg}
# the frames of one video: a COCO photo seen by a camera panning 8 x 6 px per frame
"$python" -c "
import os, sys, cv2
folder, photo = sys.argv[1], cv2.imread(sys.argv[2])
os.makedirs(folder, exist_ok=True)
for t in range(10):
    cv2.imwrite(f'{folder}/{t:05d}.png', photo[6 * t:6 * t + 360, 8 * t:8 * t + 540])
" "$out/frames" "$photo"
# shellcheck disable=SC2086
"$python" tools/benchmark.py \
  --config-file configs/YOLACT/yolact_R_101_550.yaml configs/YolactEdge/yolactedge_R_101_550.yaml \
  --baseline none --video --device "${DEVICE:-cuda}" --input-size 550x550 --images "$out/frames" \
  --iters "${ITERS:-100}" --num-detections 10 ${EXTRA:-} \
  --json "$out/yolactedge_gpu_speedup.json" --markdown "$out/yolactedge_gpu_speedup.md" \
  --opts DATASETS.TRAIN "()" DATASETS.TEST "()"
