"""The online tracker (rtinst/video/tracker.py), its default association (association.py) and
motion prior (motion.py) on synthetic detections: crossing objects, a short occlusion, an object
entering, track death, the score tiers, tentative births, merged tracks, class agreement, the
track-level class and score, greedy vs Hungarian matching, a plug-in association."""
import pytest
import torch
from detectron2.structures import Boxes, Instances

from rtinst import get_cfg
from rtinst.errors import ConfigError
from rtinst.methods import METHODS, register_method
from rtinst.video import MaskIoU, OnlineTracker, VideoTrackResults, mask_iou
from rtinst.video.association import greedy_matching, hungarian_matching
from rtinst.video.motion import moved, new_velocity

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
    return OnlineTracker(association=MaskIoU(**settings), **kwargs)


def ids_over(track, frames):
    """The IDs the tracker gives in each of ``frames`` (lists of masks, or (masks, scores))."""
    out = []
    for frame in frames:
        masks, scores = frame if isinstance(frame, tuple) else (frame, None)
        out.append(track.update(detections(masks, scores=scores)).pred_ids.tolist())
    return out


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
    track = tracker(max_lost_frames=3)
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
    # the hidden one keeps 2; the newcomer is tentative in its first frame, then track 3
    assert ids[6:] == [[1, 2]] + [[1, 2, 3]] * 3


@pytest.mark.parametrize("max_center_distance, ids", [(1.5, [[1], [1], [1]]),
                                                      (0.0, [[1], [], [2]])])
def test_an_object_reappearing_beside_its_last_mask(max_center_distance, ids):
    """Hidden for two frames, it comes back 14 px on (no overlap with its last mask, centres
    14 / 12 = 1.17 box sizes apart): the distance stage continues the track; IoU alone opens a
    new (tentative, then confirmed) one."""
    track = tracker(max_center_distance=max_center_distance)
    assert ids_over(track, [[square(10, 10)], [], [], [square(24, 10)], [square(24, 10)]]) == \
        [ids[0], [], [], ids[1], ids[2]]
    far = tracker()
    assert ids_over(far, [[square(10, 10)], [square(40, 10)], [square(40, 10)]]) == \
        [[1], [], [2]]  # 2.5 sizes away: a new object


def test_a_track_ends_after_max_lost_frames():
    track = tracker(max_lost_frames=2)
    # missed 3 > 2 frames: track 1 ends; the object back opens track 2 (tentative first)
    assert ids_over(track, [[square(10, 10)], [], [], [], [square(10, 10)], [square(10, 10)]]) \
        == [[1], [], [], [], [], [2]]


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
    preferring = tracker(duplicate_iou=0.5)  # the two squares overlap by 0.2
    preferring.update(detections([square(5, 5), square(13, 5)], classes=[0, 1]))
    middle = detections([square(9, 5)], classes=[1])  # IoU 0.5 with each
    assert preferring.update(middle).pred_ids.tolist() == [2]
    flipped = tracker()
    flipped.update(detections([square(5, 5)], classes=[0]))
    assert flipped.update(detections([square(5, 5)], classes=[1])).pred_ids.tolist() == [1]
    strict = tracker(class_mismatch_cost=1e6, merge_iou=1.0)
    strict.update(detections([square(5, 5)], classes=[0]))
    assert strict.update(detections([square(5, 5)], classes=[1])).pred_ids.tolist() == []
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


def test_results_decide_class_and_score_over_the_track():
    """A track's class is the one of highest summed score over its frames (its detections' and
    their duplicates'), its score its detections' mean; further hypotheses are scored by their
    class's mean over the track's frames. A track missing a frame has None there."""
    track, results = tracker(), VideoTrackResults(length=3, max_hypotheses=2, length_power=0.0)
    for t in range(3):
        masks, scores = [square(5 + t, 5)], [0.9 if t == 0 else 0.6]
        if t != 1:
            masks.append(square(50, 20))
            scores.append(0.7)
        # the first object flickers: class 2 in frame 0, class 1 after
        classes = [2 if t == 0 else 1, 0][: len(masks)]
        out = track.update(detections(masks, scores=scores, classes=classes))
        hypotheses = track.hypotheses
        if t == 0:  # its detection in frame 0 had a duplicate of class 1 (0.5)
            hypotheses = [{2: 0.9, 1: 0.5}, hypotheses[1]]
        results.add(t, out, hypotheses)
    first_1, first_2, second_0 = results.tracks()
    # class 1: 0.5 + 0.6 + 0.6 = 1.7 beats class 2: 0.9; score: (0.9 + 0.6 + 0.6) / 3
    assert (first_1["category_id"], first_1["hypothesis"]) == (1, 0)
    assert first_1["score"] == pytest.approx(0.7)
    assert (first_2["category_id"], first_2["hypothesis"]) == (2, 1)
    assert first_2["score"] == pytest.approx(0.3)  # 0.9 / 3
    assert first_2["segmentations"] is first_1["segmentations"]
    assert all(s is not None for s in first_1["segmentations"])
    assert second_0["segmentations"][1] is None and second_0["segmentations"][0] is not None
    assert second_0["score"] == pytest.approx(0.7)
    results.max_hypotheses = 1
    assert [(r["category_id"], r["hypothesis"]) for r in results.tracks()] == [(1, 0), (0, 0)]
    results.length_power = 1.0  # times the track's share of the video's frames: 3/3 and 2/3
    assert [r["score"] for r in results.tracks()] == pytest.approx([0.7, 0.7 * 2 / 3])


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
    with pytest.raises(ConfigError, match="MODEL.TRACKER.ASSOCIATION.*'Nope'.*MaskIoU"):
        OnlineTracker(cfg)


def test_a_score_dip_keeps_its_track_through_the_low_tier():
    """A confident object scoring 0.3 (below HIGH_SCORE_THRESH 0.5) for two frames keeps its
    ID: the low tier continues the tracks seen in the last frame. Without the low tier (scores
    below 0.5 dropped) the track is lost for two frames, and then found again as track 1."""
    scores = [0.9, 0.9, 0.3, 0.3, 0.9]
    frames = [([square(5 + 2 * t, 5)], [s]) for t, s in enumerate(scores)]
    assert ids_over(tracker(score_thresh=0.1), frames) == [[1]] * 5
    assert ids_over(tracker(score_thresh=0.5), frames) == [[1], [1], [], [], [1]]
    # a low detection never opens a track, nor continues a lost one
    assert ids_over(tracker(), [([square(5, 5)], [0.3])] * 3) == [[]] * 3


def test_a_one_frame_false_detection_never_becomes_a_track():
    track = tracker()
    frames = [[square(5, 5)], [square(6, 5), square(50, 20)], [square(7, 5)], [square(8, 5)]]
    assert ids_over(track, frames) == [[1]] * 4
    assert track.counts["unconfirmed"] == 1 and track.counts["tracks"] == 1
    confirmed_at_once = tracker(confirm_frames=1)
    assert ids_over(confirmed_at_once, frames) == [[1], [1, 2], [1], [1]]


def test_a_tentative_tracks_first_frames_come_out_late():
    """Confirmed in its second frame, a track's first frame is handed back as ``late``."""
    track = tracker()
    track.update(detections([square(5, 5)]))
    assert track.update(detections([square(5, 5), square(50, 20)])).pred_ids.tolist() == [1]
    assert track.late == []
    out = track.update(detections([square(5, 5), square(51, 20)]))
    assert out.pred_ids.tolist() == [1, 2]
    ((frame, instances, classes),) = track.late
    assert frame == 1 and instances.pred_ids.tolist() == [2]
    assert instances.pred_masks[0].equal(square(50, 20)) and classes == {0: pytest.approx(0.9)}


def test_an_object_hidden_three_frames_returns_with_its_id():
    frames = [[square(10, 10), square(50, 20)]] * 2 + [[square(10, 10)]] * 3 + \
        [[square(10, 10), square(50, 20)]] * 2
    assert ids_over(tracker(), frames) == [[1, 2]] * 2 + [[1]] * 3 + [[1, 2]] * 2


def test_motion_keeps_ids_when_two_objects_pass_through_each_other():
    """Two squares on one line, 4 px a frame towards each other; in the frames they overlap, the
    front one (A) hides B but for a sliver. Predicted at its velocity, B is found again past
    A; with its last mask as the prior (no motion) the IoU pairs them up wrongly."""
    def frames():
        for t in range(16):
            a = square(4 + 4 * t, 14)
            b = square(64 - 4 * t, 14) & ~a
            yield [m for m in (a, b) if m.sum() >= 12]

    with_motion = ids_over(tracker(), frames())
    assert with_motion[0] == [1, 2] and with_motion[-1] == [1, 2]
    without = ids_over(tracker(motion="none"), frames())
    assert without[-1] != [1, 2]


def test_velocity_and_moved_region():
    box = torch.tensor([0.0, 0.0, 10.0, 10.0])
    step = new_velocity(None, box, box + torch.tensor([4.0, 2.0, 4.0, 2.0]), frames=2)
    assert step.tolist() == [2.0, 1.0]  # per frame
    assert new_velocity(step, box, box + 4, frames=1).tolist() == [3.0, 2.5]  # (2+4)/2, (1+4)/2
    one = detections([square(8, 8, size=4)])
    one.association_masks = one.pred_masks.float()[:, ::2, ::2]  # a 2x2 block at (4, 4)
    shifted = moved(one, torch.tensor([4.0, -2.0]), stride=2)
    assert shifted.pred_boxes.tensor.tolist() == [[12.0, 6.0, 16.0, 10.0]]
    assert shifted.association_masks[0].nonzero().tolist() == [[3, 6], [3, 7], [4, 6], [4, 7]]


def test_duplicate_tracks_merge_into_the_older():
    """Two tracks opened on one object (two detections 2 px apart: IoU 0.71 < DUPLICATE_IOU
    0.8); when one detection is left, the track it continues (2) overlaps the lost one by more
    than MERGE_IOU 0.6 and is merged into the older one (1)."""
    track = tracker(duplicate_iou=0.8, merge_iou=0.6)
    frames = [[square(4, 5), square(6, 5)], [square(6, 5)], [square(8, 5)]]
    assert ids_over(track, frames) == [[1, 2], [1], [1]]
    assert track.counts["merged"] == 1
    assert ids_over(tracker(duplicate_iou=0.8, merge_iou=1.0), frames) == [[1, 2], [2], [2]]


def test_greedy_and_hungarian_matching_differ_on_a_hand_case():
    cost = torch.tensor([[0.1, 0.2], [0.15, 0.9]]).numpy()
    allowed = cost < 1
    assert greedy_matching(cost, allowed) == [(0, 0), (1, 1)]  # 0.1 first, then 0.9: 1.0
    assert hungarian_matching(cost, allowed) == [(0, 1), (1, 0)]  # 0.2 + 0.15 = 0.35
    allowed[1, 1] = False
    assert greedy_matching(cost, allowed) == [(0, 0)]
