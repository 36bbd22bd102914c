"""YouTube-VIS evaluation: the spatio-temporal IoU, AP / AR and identity metrics on small
hand-computed videos, the official result file, GT formats and bad input."""
import copy
import json
import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import MetadataCatalog

from rtinst.evaluation.ytvis_evaluation import (
    YTVISEvaluator,
    compute_identity_metrics,
    compute_segm_metrics,
    load_tracks,
    spatiotemporal_iou,
)

H = W = 4
CATEGORY_MAP = {7: 0, 9: 1}  # dataset category id -> contiguous


def rle(*cells):
    """A 4x4 frame's mask (counts bytes, as a model's output) with the (row, col) cells set."""
    mask = np.zeros((H, W), dtype=np.uint8, order="F")
    for r, c in cells:
        mask[r, c] = 1
    return mask_util.encode(mask)


def block(rows, cols):
    return rle(*[(r, c) for r in rows for c in cols])


A = block((0, 1), (0, 1))  # GT A: top-left 2x2 (4 px), static over the frames
B = block((2, 3), (2, 3))  # GT B: bottom-right 2x2 (4 px), disjoint from A
F = block((0, 1), (2, 3))  # top-right 2x2: on neither GT


def as_json(segmentation):
    return None if segmentation is None else {"size": segmentation["size"],
                                              "counts": segmentation["counts"].decode()}


def video(video_id, length):
    return {"id": video_id, "width": W, "height": H, "length": length,
            "file_names": [f"{video_id}/{t}.jpg" for t in range(length)]}


def gt_track(ann_id, segmentations, video_id=1, category_id=7, iscrowd=0):
    return {"id": ann_id, "video_id": video_id, "category_id": category_id, "iscrowd": iscrowd,
            "segmentations": [as_json(s) for s in segmentations],
            "areas": [None if s is None else 4 for s in segmentations]}


# Video 1: GT A and B in all 3 frames; video 2: nothing at all (no GT, and no results below).
GT = {
    "videos": [video(1, 3), video(2, 2)],
    "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}],
    "annotations": [gt_track(11, [A, A, A]), gt_track(12, [B, B, B])],
}


def result(segmentations, score, category_id=7, video_id=1):
    return {"video_id": video_id, "category_id": category_id, "score": score,
            "segmentations": [as_json(s) for s in segmentations]}


# The hand-computed case, by score:
#   d1 (0.9) = A, A, A        IoU(d1, A) = 12/12 = 1;  IoU(d1, B) = 0
#   d3 (0.8) = A, B, B        an ID swap: follows A for a frame, then B;
#                             IoU(d3, A): I = 4, U = 4 + (4+4) + (4+4) = 20 -> 1/5;
#                             IoU(d3, B): I = 8, U = (4+4) + 4 + 4 = 16 -> 1/2
#   d2 (0.7) = B, B, None     misses a frame: IoU(d2, B) = 8 / 12 = 2/3;  IoU(d2, A) = 0
#   d4 (0.6) = F, F, F        a false positive: 0 with both
HAND_CASE = [result([A, A, A], 0.9), result([A, B, B], 0.8), result([B, B, None], 0.7),
             result([F, F, F], 0.6)]
# COCO's greedy matching by score, 2 GT, IoU >= threshold:
#   t = .50:            d1-A, d3-B (1/2 >= .5), d2 FP (B taken), d4 FP
#     TP 1 2 2 2, FP 0 0 1 2: recall .5 1 1 1, precision 1 1 2/3 1/2; interpolated
#     precision (max to the right) is 1 at every recall point: AP = 1
#   t = .55, .60, .65:  d1-A, d3 FP (1/2 < t), d2-B (2/3 >= t), d4 FP
#     TP 1 1 2 2, FP 0 1 1 2: recall .5 .5 1 1, precision 1 1/2 2/3 1/2; interpolated
#     1 2/3 2/3 1/2: recall points 0..0.50 (51) -> 1, 0.51..1 (50) -> 2/3:
#     AP = (51 + 50 * 2/3) / 101 = 253/303
#   t = .70 ... .95 (6): d1-A only: recall .5 at most: points 0..0.50 -> 1, the 50 above -> 0:
#     AP = 51/101
# AP = (1 + 3 * 253/303 + 6 * 51/101) / 10 = (101 + 253 + 306) / 1010 = 66/101
# AP50 = 1, AP75 = 51/101
# AR10: final recall 1 at t = .50-.65 (4), .5 at the 6 above: (4 + 3) / 10 = 0.7
# AR1: at most the top track per video, d1, matched at every t: recall 1/2
HAND_EXPECTED = {"AP": 66 / 101, "AP50": 1.0, "AP75": 51 / 101, "APs": 66 / 101, "AR1": 0.5,
                 "AR10": 0.7}


@pytest.fixture
def register(tmp_path):
    """Registers a throwaway dataset with a GT file; removes it afterwards."""
    names = []

    def _register(gt):
        path = tmp_path / f"gt_{len(names)}.json"
        path.write_text(json.dumps(gt))
        name = f"rtinst_test_ytvis_eval_{len(names)}"
        MetadataCatalog.get(name).set(json_file=str(path),
                                      thing_dataset_id_to_contiguous_id=dict(CATEGORY_MAP))
        names.append(name)
        return name

    yield _register
    for name in names:
        MetadataCatalog.remove(name)


def model_output(results):
    """The results (official format) as the evaluator's inputs / outputs of video 1."""
    tracks = [{"category_id": CATEGORY_MAP[r["category_id"]], "score": r["score"],
               "hypothesis": r.get("hypothesis", 0),
               "segmentations": [None if s is None else dict(s, counts=s["counts"].encode())
                                 for s in r["segmentations"]]} for r in results]
    return [{"video_id": 1, "length": 3}], [{"tracks": tracks}]


def test_spatiotemporal_iou_by_hand():
    dt = [block((0, 1), (0, 1)),  # 4 px
          block((0,), (0, 1, 2, 3)),  # 4 px
          None,
          None]
    gt = [block((0, 1), (0, 1, 2)),  # 6 px, holds the 4 of dt
          block((0,), (0, 1)),  # 2 px, inside dt's 4
          block((3,), (0, 1, 2)),  # 3 px, dt has no mask
          None]  # neither: adds nothing
    # I = 4 + 2 + 0 = 6;  U = 6 + 4 + 3 + 0 = 13
    assert spatiotemporal_iou(dt, gt) == pytest.approx(6 / 13)
    assert spatiotemporal_iou(gt, dt) == pytest.approx(6 / 13)
    # crowd GT: I over the result's own area, 4 + 4 = 8 -> 6/8
    assert spatiotemporal_iou(dt, gt, iscrowd=True) == pytest.approx(3 / 4)
    assert spatiotemporal_iou([None, None], [None, None]) == 0.0
    with pytest.raises(ValueError, match="different lengths"):
        spatiotemporal_iou(dt, gt[:3])


def test_hand_case_ious():
    """The ST-IoUs the hand case's comments work with."""
    d1, d3, d2, d4 = [r["segmentations"] for r in HAND_CASE]
    expected = [(d1, 1.0, 0.0), (d3, 1 / 5, 1 / 2), (d2, 0.0, 2 / 3), (d4, 0.0, 0.0)]
    for track, with_a, with_b in expected:
        assert spatiotemporal_iou(track, [as_json(A)] * 3) == pytest.approx(with_a)
        assert spatiotemporal_iou(track, [as_json(B)] * 3) == pytest.approx(with_b)


def test_ground_truth_as_results_scores_100():
    results = [result([A, A, A], 1.0), result([B, B, B], 1.0)]
    segm = compute_segm_metrics(GT, results)
    for name in ("AP", "AP50", "AP75", "APs", "AR10"):
        assert segm[name] == pytest.approx(100.0)
    assert segm["AR1"] == pytest.approx(50.0)  # one track per video: one of the two GT
    assert math.isnan(segm["APm"]) and math.isnan(segm["APl"])  # no GT of that size


def test_no_results_score_0_not_nan():
    segm = compute_segm_metrics(GT, [])
    for name in ("AP", "AP50", "AP75", "APs", "AR1", "AR10"):
        assert segm[name] == 0.0


def test_hand_computed_ap_and_ar():
    segm = compute_segm_metrics(GT, HAND_CASE)
    for name, value in HAND_EXPECTED.items():
        assert segm[name] / 100 == pytest.approx(value, abs=1e-6), name


def test_perfect_tracking_identity_metrics():
    tracking = compute_identity_metrics(GT, [result([A, A, A], 1.0), result([B, B, B], 1.0)])
    assert tracking["IDF1"] == pytest.approx(100.0)
    assert tracking["IDSW"] == 0
    for name in ("MOTA", "HOTA", "DetA", "AssA"):
        assert tracking[name] == pytest.approx(100.0)


# Two confident tracks swapping at frame 1 (t1 = A, B, B; t2 = B, A, A) and a junk track
# (score 0.1) on F in every frame. Per frame mask IoU is 1 or 0.
SWAP = [result([A, B, B], 0.9), result([B, A, A], 0.9), result([F, F, F], 0.1)]


def test_id_swap_identity_metrics():
    tracking = compute_identity_metrics(GT, SWAP, id_score_threshold=0.5)
    # CLEAR: 6 GT detections all matched (TP 6, FP 0, FN 0); A and B each change track at
    # frame 1: IDSW 2, MOTA = (6 - 0 - 2) / 6
    assert tracking["IDSW"] == 2
    assert tracking["MOTA"] == pytest.approx(100 * 4 / 6)
    # Identity: A-t2 and B-t1 (2 frames each): IDTP 4, IDFN 2, IDFP 2;
    # IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) = 8 / 12
    assert tracking["IDF1"] == pytest.approx(100 * 8 / 12)
    # HOTA: every detection matched at every alpha (DetA 1); pairs A-t1, B-t2 matched 1 frame
    # (Ass-IoU 1 / (3 + 3 - 1) = 1/5), A-t2, B-t1 2 frames (2 / (3 + 3 - 2) = 1/2):
    # AssA = (1/5 + 1/5 + 2 * 1/2 + 2 * 1/2) / 6 = 0.4, HOTA = sqrt(DetA * AssA)
    assert tracking["DetA"] == pytest.approx(100.0)
    assert tracking["AssA"] == pytest.approx(40.0)
    assert tracking["HOTA"] == pytest.approx(100 * math.sqrt(0.4))
    # with no score threshold the junk track counts: 3 more IDFP, IDF1 = 8 / (8 + 5 + 2)
    everything = compute_identity_metrics(GT, SWAP, id_score_threshold=0.0)
    assert everything["IDF1"] == pytest.approx(100 * 8 / 15)


def test_evaluator_writes_official_results_that_round_trip(register, tmp_path):
    name = register(GT)
    # the hand case, and a "dog" track (contiguous 1, dataset id 9: no GT; below the ID
    # threshold) which changes neither score
    dog = result([None, F, None], 0.3, category_id=9)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"))
    evaluator.reset()
    evaluator.process(*model_output(HAND_CASE + [dog]))
    scores = evaluator.evaluate()
    for metric, value in HAND_EXPECTED.items():
        assert scores["segm"][metric] / 100 == pytest.approx(value, abs=1e-6), metric
    assert scores["tracking"] == compute_identity_metrics(GT, HAND_CASE)

    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["category_id"] for r in written] == [7, 7, 7, 7, 9]
    assert [r["score"] for r in written] == [0.9, 0.8, 0.7, 0.6, 0.3]
    assert written[2]["segmentations"][2] is None and written[4]["segmentations"][0] is None
    assert all(isinstance(s["counts"], str) and s["size"] == [H, W]
               for r in written for s in r["segmentations"] if s is not None)
    assert written == HAND_CASE + [dog]
    assert compute_segm_metrics(GT, written) == pytest.approx(scores["segm"], nan_ok=True)


def test_identity_metrics_count_each_track_once_and_say_so(register, tmp_path, caplog):
    """A track's second class hypothesis counts for AP but not for the identity metrics (it
    would be a second, duplicate track on A: IDF1 below 100); the log says which tracks count,
    and warns when none does."""
    name = register(GT)
    perfect = [result([A, A, A], 0.9), result([B, B, B], 0.9)]
    second_class = dict(result([A, A, A], 0.6, category_id=9), hypothesis=1)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path), id_score_threshold=0.5)
    evaluator.reset()
    with caplog.at_level("INFO", logger="rtinst.evaluation.ytvis_evaluation"):
        evaluator.process(*model_output(perfect + [second_class]))
        scores = evaluator.evaluate()
    assert scores["tracking"]["IDF1"] == pytest.approx(100.0)
    assert compute_identity_metrics(GT, perfect + [second_class])["IDF1"] < 100
    assert "count 2 of the 3 result tracks" in caplog.text
    assert "1 class hypotheses left out" in caplog.text
    assert "hypothesis" not in json.loads((tmp_path / "results.json").read_text())[2]
    caplog.clear()
    evaluator = YTVISEvaluator(name, id_score_threshold=0.95)
    evaluator.reset()
    with caplog.at_level("INFO", logger="rtinst.evaluation.ytvis_evaluation"):
        evaluator.process(*model_output(perfect))
        assert evaluator.evaluate()["tracking"]["IDF1"] == 0
    (record,) = [r for r in caplog.records if "identity metrics" in r.getMessage()]
    assert record.levelname == "WARNING" and "TEST.VIDEO_ID_SCORE_THRESH" in record.getMessage()


def test_unannotated_split_writes_results_and_scores_nothing(register, tmp_path):
    name = register({k: v for k, v in GT.items() if k != "annotations"})
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "out"))
    evaluator.reset()
    evaluator.process(*model_output(HAND_CASE))
    assert evaluator.evaluate() == {}
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) == 4


def test_polygon_and_uncompressed_rle_ground_truth_load():
    gt = copy.deepcopy(GT)
    square = [[0, 0, 2, 0, 2, 2, 0, 2]]  # the polygon of A's 2x2 block
    # B column by column: 10 pixels off, 2 on (col 2), 2 off, 2 on (col 3)
    uncompressed = {"size": [H, W], "counts": [10, 2, 2, 2]}
    gt["annotations"][0]["segmentations"] = [square, square, None]
    gt["annotations"][1]["segmentations"] = [uncompressed, uncompressed, None]
    tracks, _ = load_tracks(gt, [])
    for track, expected in zip(tracks, (A, B)):
        assert track["segmentation"][2] is None
        for segmentation in track["segmentation"][:2]:
            assert np.array_equal(mask_util.decode(segmentation), mask_util.decode(expected))
    results = [result([A, A, None], 1.0), result([B, B, None], 1.0)]
    assert compute_segm_metrics(gt, results)["AP"] == pytest.approx(100.0)


def test_wrong_segmentation_length_names_the_video(register):
    evaluator = YTVISEvaluator(register(GT))
    inputs, outputs = model_output(HAND_CASE[:1])
    outputs[0]["tracks"][0]["segmentations"].append(None)
    with pytest.raises(ValueError, match="video 1: a result track has 4 segmentations"):
        evaluator.process(inputs, outputs)
    with pytest.raises(ValueError, match="video 2: a result track has 3 segmentations"):
        compute_segm_metrics(GT, [result([A, A, A], 0.9, video_id=2)])


def test_unknown_video_names_it():
    with pytest.raises(ValueError, match="video 99 is not in the ground truth"):
        compute_segm_metrics(GT, [result([A, A, A], 0.9, video_id=99)])


def test_missing_ground_truth_file_names_dataset_and_file(register):
    name = register(GT)
    missing = MetadataCatalog.get(name).json_file
    Path(missing).unlink()
    evaluator = YTVISEvaluator(name)
    evaluator.reset()
    with pytest.raises(FileNotFoundError, match=f"'{name}'.*{missing}"):
        evaluator.evaluate()
