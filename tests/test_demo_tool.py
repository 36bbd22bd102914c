"""tools/demo.py with a Detectron2 model-zoo RetinaNet (random weights, CPU, small input size)."""

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # every test runs the tool in a subprocess

REPO = Path(__file__).resolve().parents[1]


def run_demo(inputs, output):
    command = [
        sys.executable,
        "tools/demo.py",
        "--config-file",
        "zoo:COCO-Detection/retinanet_R_50_FPN_1x.yaml",
        "--input",
        *map(str, inputs),
        "--output",
        str(output),
        "--confidence-threshold",
        "0.0",
        "--opts",
        "MODEL.DEVICE",
        "cpu",
        "INPUT.MIN_SIZE_TEST",
        "96",
        "INPUT.MAX_SIZE_TEST",
        "160",
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_images_in_a_folder_skipping_an_unreadable_one(tmp_path, coco_mini):
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted((coco_mini / "train2017").glob("*.jpg"))[:2]
    for source in sources:
        shutil.copy(source, folder)
    (folder / "broken.jpg").write_text("not an image")
    result = run_demo([folder], tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (
        "skipping unreadable image" in result.stderr and str(folder / "broken.jpg") in result.stderr
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [s.name for s in sources]
    for source in sources:
        drawn = cv2.imread(str(tmp_path / "out" / source.name))
        assert drawn is not None and drawn.shape == cv2.imread(str(source)).shape


def test_video(tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for i in range(5):
        writer.write(np.full((64, 96, 3), 40 * i, np.uint8))
    writer.release()
    result = run_demo([video], tmp_path / "out.mp4")
    assert result.returncode == 0, result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)


def test_unreadable_image_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    result = run_demo([broken], tmp_path / "out")
    assert result.returncode != 0
    assert f"cannot read image {broken}" in result.stderr and "Traceback" not in result.stderr


def test_missing_input_is_a_clear_error(tmp_path):
    result = run_demo([tmp_path / "nowhere.jpg"], tmp_path / "out")
    assert result.returncode != 0
    assert (
        f"input not found: {tmp_path / 'nowhere.jpg'}" in result.stderr
        and "Traceback" not in result.stderr
    )
