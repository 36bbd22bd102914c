"""The online tracker (rtinst/video/tracker.py) and its default association (association.py) on
synthetic detections: crossing objects, a short occlusion, an object entering, track death,
score thresholds, class agreement, a plug-in association."""
import pytest
import torch
from detectron2.structures import Boxes, Instances

from rtinst import get_cfg
from rtinst.errors import ConfigError
from rtinst.methods import METHODS, register_method
from rtinst.video import MaskIoUHungarian, OnlineTracker, VideoTrackResults, mask_iou

HEIGHT, WIDTH = 40, 80


def square(x, y, size=12):
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    mask[max(y, 0): y + size, max(x, 0): x + size] = True
    return mask


def detections(masks, scores=None, classes=None):
    """Instances of one frame with masks, boxes from the masks, scores and classes."""
    instances = Instances((HEIGHT, WIDTH))
    masks = torch.stack(masks) if masks else torch.zeros(0, HEIGHT, WIDTH, dtype=torch.bool)
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    instances.pred_masks = masks
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    n = len(masks)
    instances.scores = torch.tensor(scores if scores is not None else [0.9] * n)
    instances.pred_classes = torch.tensor(classes if classes is not None else [0] * n)
    return instances


def tracker(**kwargs):
    settings = {"min_iou": kwargs.pop("min_iou", 0.1),
                "max_center_distance": kwargs.pop("max_center_distance", 1.5),
                "class_mismatch_cost": kwargs.pop("class_mismatch_cost", 0.5)}
    return OnlineTracker(association=MaskIoUHungarian(**settings), **kwargs)


def test_mask_iou_hand_case():
    a = torch.zeros(1, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True  # 4 pixels
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    b[0, :2, 1:3] = True  # shares 2 of its 4 pixels: IoU 2 / (4 + 4 - 2) = 1/3
    b[1, 2:, 2:] = True  # disjoint: 0
    assert torch.allclose(mask_iou(a, b), torch.tensor([[1 / 3, 0.0]]))
    # large masks are compared area-downsampled: the IoU hardly moves
    big_a = torch.zeros(1, 960, 1280, dtype=torch.bool)
    big_b = torch.zeros(1, 960, 1280, dtype=torch.bool)
    big_a[0, 100:500, 100:600] = True
    big_b[0, 300:700, 300:800] = True
    exact = (200 * 300) / (2 * 400 * 500 - 200 * 300)
    assert mask_iou(big_a, big_b).item() == pytest.approx(exact, abs=0.01)


def test_ids_survive_a_crossing():
    """A moves right in front of B, which moves left, their paths overlapping by half; both keep
    their IDs, also while B is partly hidden."""
    track = tracker()
    for t in range(25):
        a = square(2 + 3 * t, 10)
        b = square(WIDTH - 14 - 3 * t, 16) & ~a  # A is in front
        out = track.update(detections([a, b]))
        assert out.pred_ids.tolist() == [1, 2], f"frame {t}"


def test_ids_survive_a_short_occlusion_and_an_object_enters():
    track = tracker(max_missed_frames=3)
    ids = []
    for t in range(10):
        masks = [square(10 + t, 10)]
        if t not in (3, 4, 5):  # hidden for three frames
            masks.append(square(40 + t, 14))
        if t >= 6:  # enters from the right border
            masks.append(square(WIDTH - 2 * (t - 5), 20))
        ids.append(track.update(detections(masks)).pred_ids.tolist())
    assert ids[:3] == [[1, 2]] * 3
    assert ids[3:6] == [[1]] * 3
    assert ids[6:] == [[1, 2, 3]] * 4  # the hidden one keeps 2, the newcomer opens 3


@pytest.mark.parametrize("max_center_distance, ids", [(1.5, [1, 1]), (0.0, [1, 2])])
def test_an_object_reappearing_beside_its_last_mask(max_center_distance, ids):
    """Hidden for two frames, it comes back 14 px on (no overlap with its last mask, centres
    14 / 12 = 1.17 box sizes apart): the second stage continues the track, IoU alone cannot."""
    track = tracker(max_center_distance=max_center_distance)
    seen = [track.update(detections([square(10, 10)])).pred_ids.item()]
    track.update(detections([]))
    track.update(detections([]))
    seen.append(track.update(detections([square(24, 10)])).pred_ids.item())
    assert seen == ids
    far = tracker()
    far.update(detections([square(10, 10)]))
    assert far.update(detections([square(40, 10)])).pred_ids.tolist() == [2]  # 2.5 sizes away


def test_a_track_ends_after_max_missed_frames():
    track = tracker(max_missed_frames=2)
    assert track.update(detections([square(10, 10)])).pred_ids.tolist() == [1]
    for _ in range(3):  # missed 3 > 2 frames: track 1 ends
        assert len(track.update(detections([]))) == 0
    assert track.update(detections([square(10, 10)])).pred_ids.tolist() == [2]


def test_score_thresholds():
    track = tracker(score_thresh=0.1, birth_score_thresh=0.5)
    out = track.update(detections([square(5, 5), square(40, 5)], scores=[0.9, 0.3]))
    assert out.pred_ids.tolist() == [1]  # 0.3 < 0.5: no track born
    assert out.scores.tolist() == pytest.approx([0.9])
    # below the birth threshold, a detection still continues a track; below SCORE_THRESH not
    out = track.update(detections([square(6, 5), square(40, 5)], scores=[0.3, 0.05]))
    assert out.pred_ids.tolist() == [1]
    assert out.scores.tolist() == pytest.approx([0.3])


def test_class_agreement():
    """The class is a preference: of two tracks overlapping a detection alike, the one of its
    class continues; a class flip alone still continues a track, unless the cost forbids it."""
    preferring = tracker()
    preferring.update(detections([square(5, 5), square(13, 5)], classes=[0, 1]))
    middle = detections([square(9, 5)], classes=[1])  # IoU 0.5 with each
    assert preferring.update(middle).pred_ids.tolist() == [2]
    flipped = tracker()
    flipped.update(detections([square(5, 5)], classes=[0]))
    assert flipped.update(detections([square(5, 5)], classes=[1])).pred_ids.tolist() == [1]
    strict = tracker(class_mismatch_cost=1e6)
    strict.update(detections([square(5, 5)], classes=[0]))
    assert strict.update(detections([square(5, 5)], classes=[1])).pred_ids.tolist() == [2]


def test_duplicates_of_one_object_open_one_track_with_their_classes():
    """A detection overlapping a higher-scoring one by 0.7 or more (IoU 132 / 156 = 0.85 of
    two squares 1 px apart) is dropped, whatever its class, and becomes a class hypothesis of
    the one kept; a neighbour overlapping less is kept."""
    track = tracker(duplicate_iou=0.7)
    frame = detections([square(5, 5), square(6, 5), square(6, 5), square(12, 5)],
                       scores=[0.6, 0.9, 0.5, 0.8], classes=[1, 1, 0, 1])
    out = track.update(frame)
    assert out.scores.tolist() == pytest.approx([0.9, 0.8])
    assert out.pred_ids.tolist() == [1, 2]
    assert track.hypotheses == [{1: pytest.approx(0.9), 0: pytest.approx(0.5)},
                                {1: pytest.approx(0.8)}]


def test_boxes_when_the_model_has_no_masks():
    track = tracker()
    for t in range(5):
        frame = detections([square(5 + 2 * t, 5), square(50 - 2 * t, 20)])
        frame.remove("pred_masks")
        assert track.update(frame).pred_ids.tolist() == [1, 2]


def test_results_collect_one_entry_per_track_and_class_hypothesis():
    track, results = tracker(), VideoTrackResults(length=3, max_hypotheses=2)
    for t in range(3):
        masks, scores = [square(5 + t, 5)], [0.8 + 0.05 * t]
        if t != 1:
            masks.append(square(50, 20))
            scores.append(0.4)
        out = track.update(detections(masks, scores=scores, classes=[2] * len(masks)))
        hypotheses = track.hypotheses
        if t == 0:  # the first object also seen as class 1 (0.3) and class 0 (0.1) in frame 0
            hypotheses = [{2: 0.8, 1: 0.3, 0: 0.1}, hypotheses[1]]
        results.add(t, out, hypotheses)
    first_2, first_1, second_2 = results.tracks()
    assert first_2["category_id"] == 2 and first_2["score"] == pytest.approx(0.85)
    assert first_1["category_id"] == 1 and first_1["score"] == pytest.approx(0.1)  # 0.3 / 3
    assert first_1["segmentations"] is first_2["segmentations"]  # class 0 cut (2 kept)
    assert all(s is not None for s in first_2["segmentations"])
    assert second_2["segmentations"][1] is None and second_2["segmentations"][0] is not None
    assert second_2["score"] == pytest.approx(0.4)


def test_association_is_a_plug_in():
    """A method's own association, chosen by MODEL.TRACKER.ASSOCIATION: here one that swaps."""
    calls = []

    def build(cfg):
        def reversed_order(tracks, instances):
            calls.append(len(tracks))
            return [(i, len(tracks) - 1 - i) for i in range(min(len(tracks), len(instances)))]
        return reversed_order

    register_method("test_tracking_plugin", track_associations={"Reversed": build})
    try:
        cfg = get_cfg()
        cfg.MODEL.TRACKER.ASSOCIATION = "Reversed"
        track = OnlineTracker(cfg)
        frame = detections([square(5, 5), square(50, 20)])
        assert track.update(frame).pred_ids.tolist() == [1, 2]
        assert track.update(frame).pred_ids.tolist() == [2, 1]
        assert calls == [0, 2]
    finally:
        METHODS.pop("test_tracking_plugin")


def test_unknown_association_names_the_key():
    cfg = get_cfg()
    cfg.MODEL.TRACKER.ASSOCIATION = "Nope"
    with pytest.raises(ConfigError, match="MODEL.TRACKER.ASSOCIATION.*'Nope'.*MaskIoUHungarian"):
        OnlineTracker(cfg)
