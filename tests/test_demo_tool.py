"""tools/demo.py with the shapes FCOS (MobileNetV2-FPN) on the CPU at a small input size: random
weights where the test is about inputs and outputs, refused weights, class names of --dataset;
the input parsing (cameras, streams, a file named "0") in this process."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from payloads import code_running_pkl

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/FCOS/MNV2_FPN_shapes.yaml"
SMALL = ("INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "160",
         "MODEL.FCOS.POST_NMS_TOPK_TEST", "5")
COUNT_LINE = re.compile(r"^(?P<source>\S+): (?P<n>\d+) detections? ?(?:\((?P<classes>.*)\))?$")


def run_demo(inputs, output, *arguments, opts=(), random_weights=True):
    command = [
        sys.executable,
        "tools/demo.py",
        "--config-file",
        CONFIG,
        "--input",
        *map(str, inputs),
        "--output",
        str(output),
        "--confidence-threshold",
        "0.0",
        *(["--random-weights"] if random_weights else []),
        *arguments,
        "--opts",
        *SMALL,
        *opts,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def _noise(path, height=64, width=96, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(Path(path).suffix or ".png", image)  # "0": a PNG without suffix
    assert ok
    Path(path).write_bytes(encoded.tobytes())
    return path


def _video(path, frames=3):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for i in range(frames):
        writer.write(np.full((64, 96, 3), 40 * i, np.uint8))
    writer.release()
    return path


def _read_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    return frames


@pytest.mark.slow
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


@pytest.mark.slow
def test_video(tmp_path):
    video = _video(tmp_path / "clip.mp4", frames=5)
    result = run_demo([video], tmp_path / "out.mp4")
    assert result.returncode == 0, result.stderr
    frames = _read_frames(tmp_path / "out.mp4")
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    assert re.search(rf"^{re.escape(str(video))}: 5 frames, [\d.]+ detections per frame",
                     result.stdout, re.M), result.stdout


@pytest.mark.slow
def test_mixed_inputs_with_the_class_names_of_a_dataset(tmp_path):
    """Images, a folder (with a video), a glob and a video in one run, each written under the
    output folder (two inputs named a.jpg get distinct files); the counts name --dataset's
    classes."""
    folder = tmp_path / "folder"
    folder.mkdir()
    _noise(folder / "a.jpg", seed=1)
    _noise(folder / "b.png", seed=2)
    _video(folder / "inside.mp4", frames=2)
    (tmp_path / "globbed").mkdir()
    _noise(tmp_path / "globbed" / "g1.png", seed=3)
    _noise(tmp_path / "globbed" / "g2.png", seed=4)
    single = _noise(tmp_path / "a.jpg", seed=5)
    video = _video(tmp_path / "clip.mp4", frames=3)
    classes = ["apple", "banana", "cherry"]
    annotations = tmp_path / "fruit.json"
    annotations.write_text(json.dumps({
        "images": [], "annotations": [],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)],
    }))
    out = tmp_path / "out"
    result = run_demo([single, folder, tmp_path / "globbed" / "*.png", video], out,
                      "--dataset", f"fruit_demo_test={annotations},{folder}",
                      opts=("MODEL.FCOS.NUM_CLASSES", "3"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "a-2.jpg", "a.jpg", "b.png", "clip.mp4", "g1.png", "g2.png", "inside.mp4"]
    assert cv2.imread(str(out / "a-2.jpg")).shape == (64, 96, 3)
    assert len(_read_frames(out / "clip.mp4")) == 3 and len(_read_frames(out / "inside.mp4")) == 2
    lines = [COUNT_LINE.match(line) for line in result.stdout.splitlines()]
    images = [m for m in lines if m]
    assert [Path(m["source"]).name for m in images] == ["a.jpg", "a.jpg", "b.png", "g1.png",
                                                        "g2.png"]
    named = set()
    for match in images:
        per_class = dict(item.rsplit(" ", 1) for item in (match["classes"] or "").split(", ")
                         if item)
        assert sum(map(int, per_class.values())) == int(match["n"])
        named |= set(per_class)
    assert named and named <= set(classes), result.stdout
    assert re.search(rf"^{re.escape(str(video))}: 3 frames, [\d.]+ detections per frame \(("
                     r"(apple|banana|cherry) [\d.]+(, )?)+\)$", result.stdout, re.M), result.stdout


@pytest.mark.slow
def test_unreadable_image_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    result = run_demo([broken], tmp_path / "out")
    assert result.returncode != 0
    assert f"cannot read image {broken}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_input_is_a_clear_error(tmp_path):
    result = run_demo([tmp_path / "nowhere.jpg"], tmp_path / "out")
    assert result.returncode != 0
    assert (
        f"input not found: {tmp_path / 'nowhere.jpg'}" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.slow
def test_empty_weights_are_refused_without_random_weights(tmp_path):
    result = run_demo([_noise(tmp_path / "x.png")], tmp_path / "out", random_weights=False)
    assert result.returncode != 0
    assert "demo.py: error: MODEL.WEIGHTS is empty" in result.stderr
    assert "--random-weights" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_weights_that_cannot_be_used_are_refused(tmp_path):
    """A pickle that would run code (it is not run), another model's checkpoint and a URL that
    cannot be fetched (it used to run random weights silently): each a clear error."""
    evil, marker = code_running_pkl(tmp_path)
    resnet = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), resnet)
    image = _noise(tmp_path / "x.png")
    for weights, message in [(evil, "evil.pkl"), (resnet, "resnet18.pth"),
                             ("http://127.0.0.1:9/model.pth", "cannot fetch")]:
        result = run_demo([image], tmp_path / "out", random_weights=False,
                          opts=("MODEL.WEIGHTS", str(weights)))
        assert result.returncode != 0, weights
        assert "demo.py: error:" in result.stderr and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- in this process


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_tool", REPO / "tools/demo.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_camera_indices_urls_and_a_file_named_like_a_camera(demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sources = demo.collect_sources(["0", "camera:2", "rtsp://host/live", "http://h/x.mjpg"])
    assert [(s.kind, s.location) for s in sources] == [
        ("stream", 0), ("stream", 2), ("stream", "rtsp://host/live"), ("stream", "http://h/x.mjpg")]
    _noise(tmp_path / "0")  # an image file named "0" is read as such; camera:0 is the camera
    assert demo.collect_sources(["0"]) == [demo.Source("image", Path("0"), True)]
    assert demo.collect_sources(["camera:0"]) == [demo.Source("stream", 0, True)]
    outputs = demo.Outputs(tmp_path / "out", single=False)
    assert outputs.target(demo.Source("image", Path("0"), True)).name == "0.png"
    assert outputs.target(demo.Source("stream", 0, True)).name == "camera0.mp4"
    assert outputs.target(demo.Source("stream", "rtsp://h/x", True)).name == "stream.mp4"


def test_streams_that_cannot_be_opened_are_clear_errors(demo):
    with pytest.raises(demo.DemoError, match="cannot open stream http://127.0.0.1:9/live"):
        demo._open_capture(demo.Source("stream", "http://127.0.0.1:9/live", True))
    with pytest.raises(demo.DemoError, match="cannot open camera 99"):
        demo._open_capture(demo.Source("stream", 99, True))


def test_an_output_file_for_several_results_is_refused(demo, tmp_path):
    outputs = demo.Outputs(tmp_path / "out.jpg", single=False)
    with pytest.raises(demo.DemoError, match="give a folder"):
        outputs.target(demo.Source("image", Path("a.jpg"), True))


@pytest.mark.slow
def test_track_a_folder_of_frames_and_a_video(tmp_path):
    """--track: a folder of images is one video (written as <folder>.mp4 at --fps), a video file
    keeps its own; both report their tracks."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        _noise(frames / f"{i:05d}.png", seed=i)
    video = _video(tmp_path / "clip.mp4", frames=3)
    result = run_demo([frames, video], tmp_path / "out", "--track", "--fps", "5")
    assert result.returncode == 0, result.stderr
    assert len(_read_frames(tmp_path / "out" / "frames.mp4")) == 4
    assert len(_read_frames(tmp_path / "out" / "clip.mp4")) == 3
    capture = cv2.VideoCapture(str(tmp_path / "out" / "frames.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5)
    for source, count in ((frames, 4), (video, 3)):
        assert re.search(rf"^{re.escape(str(source))}: {count} frames, [\d.]+ detections per "
                         r"frame.*; \d+ tracks?$", result.stdout, re.M), result.stdout


@pytest.mark.slow
def test_track_skips_an_unreadable_frame_and_goes_on_after_a_broken_video(tmp_path):
    """--track: a frame that cannot be read is skipped and counted; a video that cannot be
    opened is one error line naming it, the next input still runs, and the exit status says
    that an input failed."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        _noise(frames / f"{i:05d}.png", seed=i)
    (frames / "00002.png").write_bytes(b"\x89PNG garbage")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 10)
    video = _video(tmp_path / "clip.mp4", frames=3)
    result = run_demo([frames, broken, video], tmp_path / "out", "--track")
    assert result.returncode != 0
    assert f"skipping unreadable frame {frames / '00002.png'}" in result.stderr
    assert re.search(rf"^{re.escape(str(frames))}: 3 frames, .*; \d+ tracks?; 1 unreadable frame "
                     r"skipped$", result.stdout, re.M), result.stdout
    assert f"demo.py: error: cannot open video {broken}\n" in result.stderr
    assert len(_read_frames(tmp_path / "out" / "frames.mp4")) == 3
    assert len(_read_frames(tmp_path / "out" / "clip.mp4")) == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "frames.mp4"]
    assert result.stderr.strip().splitlines()[-1] == (
        f"demo.py: error: 1 of 3 inputs could not be read: {broken}")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_track_says_why_no_track_came_out(tmp_path):
    """--track with every detection below MODEL.TRACKER.SCORE_THRESH: 0 tracks, and the log says
    which keys were in force and what each tracker rule removed."""
    video = _video(tmp_path / "clip.mp4", frames=3)
    result = run_demo([video], tmp_path / "out", "--track",
                      opts=("MODEL.TRACKER.SCORE_THRESH", "1.1"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"; 0 tracks$", result.stdout, re.M), result.stdout
    assert "0 tracks in 1 videos. The tracker's keys in force:" in result.stderr
    assert "SCORE_THRESH 1.1" in result.stderr
    given = re.search(r"^\s+(\d+) detections given to the tracker$", result.stderr, re.M)
    assert given and int(given.group(1)) > 0, result.stderr
    assert re.search(rf"^\s+{given.group(1)} below MODEL.TRACKER.SCORE_THRESH$", result.stderr,
                     re.M), result.stderr
