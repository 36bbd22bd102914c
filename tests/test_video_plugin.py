"""A stateful video method joins rtinst as a project does, without any file of rtinst changing: a
package written into a temporary ``projects/ToyVideo/toyvideo/`` implements the video contract
(``video_state`` / ``forward_frame``, its own keyframe policy) and registers a whole tracker
(``MODEL.TRACKER.NAME``) that reads the model's keyframe flag. Once installed, ``VideoPredictor``,
the video evaluation of ``train_net.py --eval-only``, ``tools/benchmark.py --video`` and
``tools/demo.py --track`` run it, ``tools/export_onnx.py`` writes its keyframe and frame graphs
(``rtinst.export.graphs``) that ``VideoONNXPredictor`` runs, and their outputs show the state was
carried from frame to frame: on the i-th frame after a keyframe the toy scores its one detection
1 / (1 + i), and its tracker opens a new identity at every keyframe."""
import json
import textwrap

import cv2
import numpy as np
import pytest

from plugin_projects import install_project, run

pytestmark = pytest.mark.slow

INTERVAL = 3  # a keyframe every 3 frames

TOY_VIDEO_PACKAGE = '''
"""A toy video model: one detection per frame, the whole picture; its state is the number of
frames since the last keyframe, a keyframe every MODEL.TOY_VIDEO.KEYFRAME_INTERVAL frames."""
import torch
from torch import nn

from detectron2.config import CfgNode as CN
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from rtinst import register_method
from rtinst.export.graphs import GraphSpec


def add_toyvideo_config(cfg):
    cfg.MODEL.TOY_VIDEO = CN()
    cfg.MODEL.TOY_VIDEO.KEYFRAME_INTERVAL = 3


@META_ARCH_REGISTRY.register()
class ToyVideoModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.interval = cfg.MODEL.TOY_VIDEO.KEYFRAME_INTERVAL
        self.scale = nn.Parameter(torch.ones(()))
        # the colour an export pads letterboxed pictures with
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN), persistent=False)

    @property
    def device(self):
        return self.scale.device

    def forward(self, batched_inputs):
        """Images: each one a keyframe."""
        return [self.forward_frame(x, self.video_state())[0] for x in batched_inputs]

    def video_state(self):
        return None  # no frame seen

    def forward_frame(self, inputs, since_keyframe):
        keyframe = since_keyframe is None or since_keyframe + 1 == self.interval
        since_keyframe = 0 if keyframe else since_keyframe + 1
        input_height, input_width = inputs["image"].shape[1:]
        height, width = inputs.get("height", input_height), inputs.get("width", input_width)
        instances = Instances((height, width))
        instances.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, width, height]]))
        instances.scores = self.scale.detach().reshape(1) / (1 + since_keyframe)
        instances.pred_classes = torch.zeros(1, dtype=torch.int64)
        instances.pred_masks = torch.ones(1, height, width, dtype=torch.bool)
        return {"instances": instances, "keyframe": keyframe}, since_keyframe


def frame_outputs(model, image, image_size, since_keyframe):
    """The export outputs of one frame (the graphs' version of forward_frame's)."""
    height, width = image_size[0].float(), image_size[1].float()
    zero = torch.zeros_like(height)
    boxes = torch.stack([zero, zero, width, height])[None]
    scores = (model.scale / (1 + since_keyframe)).reshape(1)
    masks = (image[:, :, 0] >= 0).to(torch.uint8)[None]  # all ones, computed from the image
    return boxes, scores, torch.zeros(1, dtype=torch.int64), masks


class KeyframeGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image, image_size):
        since_keyframe = torch.zeros(())
        return (*frame_outputs(self.model, image, image_size, since_keyframe), since_keyframe)


class FrameGraph(KeyframeGraph):
    def forward(self, image, image_size, since_keyframe):
        since_keyframe = since_keyframe + 1
        return (*frame_outputs(self.model, image, image_size, since_keyframe), since_keyframe)


class ToyVideoExport(nn.Module):
    """Two graphs, the state their frame count."""

    def __init__(self, model, height, width):
        super().__init__()
        self.model, self.keyframe_interval = model, model.interval

    def graphs(self):
        state = ("since_keyframe",)
        return {"keyframe": GraphSpec(KeyframeGraph(self.model), (), state),
                "frame": GraphSpec(FrameGraph(self.model), state, state)}


class KeyframeTracker:
    """One identity per keyframe span: what a method whose identities come from the keyframe
    (kernels reused within a clip) would register."""

    def __init__(self, cfg):
        self.id = 0

    def update(self, instances, frame_outputs):
        self.id += bool(frame_outputs["keyframe"])
        instances.pred_ids = torch.full((len(instances),), self.id, dtype=torch.int64)
        return instances


register_method("toyvideo", add_config=add_toyvideo_config,
                trackers={"KeyframeTracker": KeyframeTracker},
                export_pipelines={"ToyVideoModel": ToyVideoExport})
'''

CONFIG = f"""\
MODEL:
  META_ARCHITECTURE: "ToyVideoModel"
  DEVICE: "cpu"
  TOY_VIDEO:
    KEYFRAME_INTERVAL: {INTERVAL}
  TRACKER:
    NAME: "KeyframeTracker"
DATASETS:
  TRAIN: ()
  TEST: ("shapes_video_val",)
INPUT:
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 64
DATALOADER:
  NUM_WORKERS: 0
TEST:
  REPORT:
    ENABLED: False
"""


@pytest.fixture(scope="module")
def toy_video(tmp_path_factory):
    """(config file, environment with the installed toy video method)."""
    root = tmp_path_factory.mktemp("toy_video")
    project, env = install_project(root, "ToyVideo", "toyvideo", TOY_VIDEO_PACKAGE)
    config = project / "configs" / "toy_video.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG)
    return config, env


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory):
    """7 frames of a square moving right."""
    folder = tmp_path_factory.mktemp("frames")
    for t in range(7):
        pixels = np.full((48, 64, 3), 30, np.uint8)
        pixels[10:30, 4 * t:4 * t + 20] = 220
        cv2.imwrite(str(folder / f"{t:03d}.png"), pixels)
    return folder


def expected_scores(frames):
    return [1.0 / (1 + t % INTERVAL) for t in range(frames)]


def test_video_predictor_carries_the_state(toy_video, frames_folder):
    config, env = toy_video
    code = textwrap.dedent(f"""\
        import json, sys, cv2
        from pathlib import Path
        from rtinst.engine import VideoPredictor, load_config
        cfg = load_config("{config}")
        frames = [cv2.imread(str(p)) for p in sorted(Path("{frames_folder}").glob("*.png"))]
        outputs = list(VideoPredictor(cfg).run(frames))
        json.dump([{{"score": o["instances"].scores.item(), "id": o["instances"].pred_ids.item(),
                     "keyframe": o["keyframe"]}} for o in outputs], sys.stdout)
        """)
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout)
    assert [o["score"] for o in outputs] == pytest.approx(expected_scores(7))
    assert [o["keyframe"] for o in outputs] == [t % INTERVAL == 0 for t in range(7)]
    assert [o["id"] for o in outputs] == [1, 1, 1, 2, 2, 2, 3]  # its tracker saw the keyframes


def test_video_evaluation_runs_its_frame_loop_and_tracker(toy_video, tmp_path):
    config, env = toy_video
    result = run(["train_net.py", "--config-file", config, "--eval-only",
                  "OUTPUT_DIR", tmp_path], env)
    assert result.returncode == 0, result.stderr[-3000:]
    tracks = json.loads((tmp_path / "inference" / "shapes_video_val" / "results.json").read_text())
    by_video = {}
    for track in tracks:
        by_video.setdefault(track["video_id"], []).append(track)
    assert len(by_video) == 12  # the embedded split's videos, 24 frames each
    for video_tracks in by_video.values():
        assert len(video_tracks) == 24 // INTERVAL  # one track per keyframe span
        # the mean of 1, 1/2, 1/3 over its span, times its share of the video's frames to
        # MODEL.TRACKER.TRACK_SCORE_LENGTH_POWER (0.5)
        share = (INTERVAL / 24) ** 0.5
        for track in video_tracks:
            assert track["score"] == pytest.approx(np.mean(expected_scores(INTERVAL)) * share)
            assert sum(s is not None for s in track["segmentations"]) == INTERVAL


def test_demo_tracks_it(toy_video, frames_folder, tmp_path):
    config, env = toy_video
    result = run(["tools/demo.py", "--config-file", config, "--track", "--input", frames_folder,
                  "--output", tmp_path, "--confidence-threshold", "0.0", "--random-weights"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "; 3 tracks" in result.stdout  # keyframes 0, 3 and 6
    assert (tmp_path / f"{frames_folder.name}.mp4").is_file()


def test_benchmark_times_its_video_path(toy_video, frames_folder, tmp_path):
    config, env = toy_video
    report = tmp_path / "report.json"
    result = run(["tools/benchmark.py", "--config-file", config, "--baseline", "none",
                  "--video", "--images", frames_folder, "--input-size", "64",
                  "--warmup", "0", "--iters", "1", "--json", report], env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(report.read_text())["models"]
    assert [row.get("video", False) for row in rows] == [False, True]
    assert rows[1]["meta_architecture"] == "ToyVideoModel"


def test_its_two_graph_export_carries_the_state(toy_video, frames_folder, tmp_path):
    config, env = toy_video
    result = run(["tools/export_onnx.py", "--config-file", config, "--output",
                  tmp_path / "toy.onnx", "--size", "48", "64", "--images", frames_folder,
                  "--opts", "MODEL.WEIGHTS", ""], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.name for p in tmp_path.glob("*.onnx")} == {"toy.keyframe.onnx", "toy.frame.onnx"}
    code = textwrap.dedent(f"""\
        import json, sys, cv2
        from pathlib import Path
        from rtinst.export import VideoONNXPredictor
        predictor = VideoONNXPredictor("{tmp_path / 'toy.keyframe.onnx'}")
        frames = [cv2.imread(str(p)) for p in sorted(Path("{frames_folder}").glob("*.png"))]
        outputs = [predictor(frame)["instances"] for frame in frames]
        json.dump([o.scores.tolist() for o in outputs], sys.stdout)
        """)
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == [[pytest.approx(s)] for s in expected_scores(7)]
