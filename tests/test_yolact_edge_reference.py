"""Same outputs as the reference YolactEdge (WisconsinAIVision/yolact_edge) on the same weights,
on a keyframe and on the non-keyframe warped from it.

``tests/fixtures/yolact/yolact_edge_yolact_edge_vid_resnet50_config_reference.json`` holds what
the reference computed on CPU (``projects/YOLACT/tools/yolact_edge_reference_outputs.py``) for its
``yolact_edge_vid_resnet50_config`` (R-50, FlowNetMini, P4 / P5 warped, SPA) with seeded weights
(``seeded_weights.YOLACT_EDGE_RULE``) on two frames of a COCO photo 6 px / 4 px apart: the
detections of both frames and FlowNetMini's stride-16 and stride-32 predictions on the second.
Here the same weights are converted into our model (``configs/YolactEdge/yolactedge_R_50_550.yaml``
with the reference's 40 classes), which runs ``forward_frame`` on the two frames.
"""
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

import golden_tolerances as gt
from detectron2.modeling import build_model
from rtinst.engine import load_config
from shared_files import COCO_MINI, require_shared
from yolact import convert_reference_state_dict
from yolact_seeded_weights import load_seeded_weights

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = (Path(__file__).resolve().parent / "fixtures/yolact" /
           "yolact_edge_yolact_edge_vid_resnet50_config_reference.json")
# YOLACT's, every paired mask IoU >= 0.99. Measured: keyframe boxes 6.1e-5 px, scores 0, mask
# IoU 1; non-keyframe boxes 1.2e-4 px, scores 1.8e-6, smallest mask IoU 0.99994
TOLERANCES = dataclasses.replace(gt.YOLACT, mask_iou=0.99)
# FlowNetMini's outputs (reference units, |flow| <= 1.3 here): measured equal to the bit on this
# CPU; 1e-4 leaves room for another summation order (a sign flip moves them by 2.5)
FLOW_ATOL = 1e-4


@pytest.fixture(scope="module")
def run():
    """(reference record, our outputs of both frames, our flow predictions on the second)."""
    if not FIXTURE.exists():
        pytest.skip(f"no fixture {FIXTURE}: run projects/YOLACT/tools/"
                    f"yolact_edge_reference_outputs.py")
    record = json.loads(FIXTURE.read_text())
    image = cv2.imread(str(require_shared(COCO_MINI / "train2017" / record["image"])))
    seeded = load_seeded_weights()
    assert seeded.array_digest(image) == record["image_sha256"]
    state = seeded.seeded_state_dict(seeded.read_key_spec(FIXTURE.parent / record["key_spec"]),
                                     seeded.YOLACT_EDGE_RULE)
    assert seeded.state_dict_digest(state) == record["weights_sha256"]
    cfg = load_config(str(ROOT / "configs/YolactEdge/yolactedge_R_50_550.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()",
        "MODEL.YOLACT.NUM_CLASSES", str(record["num_classes"] - 1)])
    assert cfg.MODEL.YOLACT_EDGE.SPA == record["flow"]["use_spa"]
    assert cfg.MODEL.YOLACT_EDGE.SPA_NORMALIZED == record["flow"]["use_normalized_spa"]
    assert cfg.MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL >= 2
    model = build_model(cfg)
    converted, _ = convert_reference_state_dict(state)
    incompatible = model.load_state_dict(converted, strict=False)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    model.eval()
    (dx, dy), (h, w) = record["shift_xy"], image.shape[:2]
    frames = [image[:h - dy, :w - dx], image[dy:, dx:]]
    outputs, state = [], None
    with torch.no_grad():
        for frame in frames:
            rgb = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1)))
            out, state = model.forward_frame({"image": rgb, "height": frame.shape[0],
                                              "width": frame.shape[1]}, state)
            outputs.append(out)
        lateral = model.current_lateral(model.resize_and_normalize(rgb)[None])
        flows = model.flow_net(lateral, state.keyframe.lateral)
    return record, outputs, flows


def _ours(instances):
    return [{"box": instances.pred_boxes.tensor[i].tolist(), "score": float(instances.scores[i]),
             "class": int(instances.pred_classes[i]), "mask": instances.pred_masks[i].numpy()}
            for i in range(len(instances))]


def _theirs(detections):
    return [{"box": d["box"], "score": d["score"], "class": d["class"],
             "mask": mask_util.decode(d["mask_rle"]).astype(bool)} for d in detections]


@pytest.mark.slow
@pytest.mark.parametrize("frame", ["keyframe", "non_keyframe"])
def test_same_detections_as_the_reference(run, frame):
    record, outputs, _ = run
    out = outputs[0 if frame == "keyframe" else 1]
    assert out["keyframe"] == (frame == "keyframe")
    deviation = gt.detection_deviations(_ours(out["instances"]),
                                        _theirs(record[frame]["detections"]), TOLERANCES)
    problems = gt.detection_problems(deviation, TOLERANCES)
    assert not problems, f"{frame}: " + "; ".join(problems) + f" ({deviation})"


@pytest.mark.slow
def test_same_flow_as_the_reference(run):
    """FlowNetMini's stride-16 and stride-32 flow (whole) and compensation scale / bias (their
    statistics and a few values) on the non-keyframe."""
    record, _, flows = run
    for ours, theirs in zip(flows, record["non_keyframe"]["flows"]):
        flow = ours.flow[0].double()
        assert list(flow.shape) == theirs["shape"]
        difference = (flow - torch.tensor(theirs["flow"], dtype=torch.float64)).abs().max()
        assert difference <= FLOW_ATOL, f"stride {theirs['stride']}: flow off by {difference:.3g}"
        for name in ("scale", "bias"):
            values = getattr(ours, name)[0].double()
            stats = theirs[f"{name}_stats"]
            assert abs(values.mean() - stats["mean"]) <= FLOW_ATOL, (theirs["stride"], name)
            assert abs(values.std() - stats["std"]) <= FLOW_ATOL, (theirs["stride"], name)
            samples = [float(values[c, y, x]) for c, y, x in theirs["samples_cyx"]]
            np.testing.assert_allclose(samples, theirs[f"{name}_samples"], rtol=0,
                                       atol=FLOW_ATOL, err_msg=f"{name} {theirs['stride']}")
