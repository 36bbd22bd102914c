"""YouTube-VIS video instance segmentation evaluation.

What is scored follows the definitions of the YouTube-VIS benchmark (Yang et al., "Video Instance
Segmentation", ICCV 2019) and its official API (``ytvoseval.py`` of youtubevos/cocoapi):

* a result is a *track*: one category, one score and a mask (or nothing) in every frame;
* a result track and a ground-truth track are compared by their spatio-temporal IoU: the sum
  over the frames of their masks' intersection over the sum over the frames of their union (a
  frame where only one of them has a mask adds that mask to the union);
* the video takes the place of COCO's image, and COCO's matching, precision and recall follow:
  AP averaged over IoU thresholds .50:.05:.95 and 101 recall points, at most 100 tracks per
  video (AP50, AP75 at one threshold), AR with at most 1 and 10 tracks per video, and AP by the
  track's average area over its frames: small below 128^2, medium to 256^2, large above.

The matching, accumulation and summary are pycocotools' ``COCOeval`` itself (``YTVISeval``
changes what an annotation's mask is, the IoU and the area ranges). Identity metrics of the
confident tracks (IDF1, ID switches, MOTA, HOTA) come from TrackEval, per frame on mask IoU.

Box tracks (a model without masks: results with per-frame XYWH ``bboxes`` instead of
``segmentations``) are scored the same way with every box, the GT's included, as the mask of
its rectangle on the pixel grid: the spatio-temporal box IoU, reported as ``"bbox"``.
"""
import contextlib
import io
import itertools
import json
import logging
import os
from collections import OrderedDict, defaultdict

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["YTVISEvaluator", "YTVISeval", "compute_identity_metrics", "compute_segm_metrics",
           "load_tracks", "spatiotemporal_iou", "spatiotemporal_ious", "to_rle"]

logger = logging.getLogger(__name__)

AREA_RANGES = [[0 ** 2, 1e5 ** 2], [0 ** 2, 128 ** 2], [128 ** 2, 256 ** 2], [256 ** 2, 1e5 ** 2]]
# COCOeval.summarize()'s stats, in its order, that are reported
SEGM_STATS = OrderedDict([("AP", 0), ("AP50", 1), ("AP75", 2), ("APs", 3), ("APm", 4),
                          ("APl", 5), ("AR1", 6), ("AR10", 7)])


def to_rle(segmentation, height, width):
    """One frame's mask as a compressed RLE: a polygon list or an uncompressed RLE is encoded at
    the video's ``height`` x ``width``; None (or an empty list) where the object is absent."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_util.frPyObjects(segmentation, height, width)
    return segmentation


def _frame_areas(tracks, length):
    """[len(tracks), length] pixel count of each track's mask in each frame (0 where None)."""
    areas = np.zeros((len(tracks), length))
    for i, track in enumerate(tracks):
        for t, rle in enumerate(track):
            if rle is not None:
                areas[i, t] = mask_util.area(rle)
    return areas


def spatiotemporal_ious(dt_tracks, gt_tracks, iscrowd):
    """[len(dt_tracks), len(gt_tracks)] spatio-temporal IoU of each result track with each GT
    track (each a list of per-frame RLE or None, all of one length); for a GT with
    ``iscrowd[j]`` set, as COCO: the intersection over the result's own area, summed over the
    frames the same way."""
    lengths = {len(track) for track in itertools.chain(dt_tracks, gt_tracks)}
    if len(lengths) > 1:
        raise ValueError(f"tracks of different lengths {sorted(lengths)} cannot be compared")
    length = lengths.pop() if lengths else 0
    dt_areas, gt_areas = _frame_areas(dt_tracks, length), _frame_areas(gt_tracks, length)
    intersection = np.zeros((len(dt_tracks), len(gt_tracks)))
    for t in range(length):
        d = [i for i, track in enumerate(dt_tracks) if track[t] is not None]
        g = [j for j, track in enumerate(gt_tracks) if track[t] is not None]
        if d and g:
            # with every GT taken as crowd, pycocotools' iou is |d & g| / |d|: times |d|, the
            # pixel count of the intersection (one call per frame instead of a merge per pair)
            ratio = np.asarray(mask_util.iou([dt_tracks[i][t] for i in d],
                                             [gt_tracks[j][t] for j in g], [1] * len(g)))
            intersection[np.ix_(d, g)] += np.rint(ratio * dt_areas[d, t][:, None])
    dt_total, gt_total = dt_areas.sum(1)[:, None], gt_areas.sum(1)[None, :]
    union = np.where(np.asarray(iscrowd, dtype=bool)[None, :], dt_total,
                     dt_total + gt_total - intersection)
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def spatiotemporal_iou(dt_segmentations, gt_segmentations, iscrowd=False):
    """Spatio-temporal IoU of one result track with one GT track (lists of RLE or None)."""
    return float(spatiotemporal_ious([dt_segmentations], [gt_segmentations], [iscrowd])[0, 0])


def _average_area(segmentations):
    """The track's mean mask area over the frames where it has a (non-empty) mask; 0 if none."""
    areas = _frame_areas([segmentations], len(segmentations))[0]
    return float(areas[areas > 0].mean()) if (areas > 0).any() else 0.0


def _video_length(video):
    return video.get("length", len(video["file_names"]))


def _region_key(track):
    """"bboxes" for a box track, else "segmentations"."""
    return "bboxes" if "bboxes" in track and "segmentations" not in track else "segmentations"


def _check_length(video_id, regions, length, key="segmentations"):
    """A ``ValueError`` naming the video when a track has not one entry per frame."""
    if len(regions) != length:
        raise ValueError(f"video {video_id}: a result track has {len(regions)} {key}, the "
                         f"video {length} frames")


def _box_rles(bboxes, height, width):
    """Per frame, the RLE of the XYWH box's rectangle (None where there is no box)."""
    return [None if b is None else mask_util.frPyObjects(np.array([b], dtype=np.float64), height,
                                                     width)[0]
            for b in bboxes]


def _check_result(result, videos, key="segmentations"):
    """A ``ValueError`` naming the video for a result not on a GT video or not at its size."""
    video = videos.get(result["video_id"])
    if video is None:
        raise ValueError(f"results: video {result['video_id']} is not in the ground truth")
    _check_length(result["video_id"], result[key], _video_length(video), key)
    size = [video["height"], video["width"]]
    if key == "segmentations" and \
            any(s is not None and list(s["size"]) != size for s in result["segmentations"]):
        raise ValueError(f"video {result['video_id']}: a result mask is not at the video's "
                         f"size {size[0]}x{size[1]}")


def load_tracks(gt, results, boxes=False):
    """The GT (a parsed YouTube-VIS file with ``annotations``) and the results (official
    format) as ``(GT tracks, result tracks)``, the tracks being COCO-style
    annotations of their video (``image_id``) with ``segmentation``: the per-frame RLEs,
    ``area``: their average area, and ids from 1 (COCOeval reads id 0 as "no match").
    ``boxes``: box tracks (results with ``bboxes``), every box as its rectangle's RLE."""
    videos = {video["id"]: video for video in gt["videos"]}
    key = "bboxes" if boxes else "segmentations"
    gt_tracks = []
    for i, annotation in enumerate(gt["annotations"]):
        video = videos[annotation["video_id"]]
        if boxes:
            segmentations = _box_rles(annotation.get("bboxes") or
                                      [None] * _video_length(video),
                                      video["height"], video["width"])
        else:
            segmentations = [to_rle(s, video["height"], video["width"])
                             for s in annotation["segmentations"]]
        gt_tracks.append({"id": i + 1, "image_id": video["id"],
                          "category_id": annotation["category_id"],
                          "iscrowd": int(annotation.get("iscrowd", 0)),
                          "segmentation": segmentations, "area": _average_area(segmentations)})
    dt_tracks = []
    for i, result in enumerate(results):
        _check_result(result, videos, key)
        video = videos[result["video_id"]]
        segmentations = (_box_rles(result["bboxes"], video["height"], video["width"]) if boxes
                         else list(result["segmentations"]))
        dt_tracks.append({"id": i + 1, "image_id": result["video_id"],
                          "category_id": result["category_id"], "score": float(result["score"]),
                          "iscrowd": 0, "segmentation": segmentations,
                          "area": _average_area(segmentations)})
    return gt_tracks, dt_tracks


class _VideoCOCO(COCO):
    """A COCO API object whose images are the videos and whose annotations are tracks."""

    def __init__(self, gt, tracks):
        super().__init__()
        self.dataset = {"images": [{"id": v["id"], "height": v["height"], "width": v["width"]}
                                   for v in gt["videos"]],
                        "categories": gt["categories"], "annotations": tracks}
        self.createIndex()

    def annToRLE(self, ann):
        """The track's per-frame RLEs (already converted by ``load_tracks``), not one mask."""
        return ann["segmentation"]


class YTVISeval(COCOeval):
    """COCOeval on videos: the IoU of a result and a GT is their spatio-temporal IoU and the
    area ranges are YouTube-VIS's (thresholds, recall points and maxDets are COCO's, the same)."""

    def __init__(self, coco_gt, coco_dt):
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.params.areaRng = AREA_RANGES

    def computeIoU(self, imgId, catId):
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if not gt and not dt:
            return []
        # the order of evaluateImg: by score, stable, at most maxDets[-1]
        dt = sorted(dt, key=lambda d: -d["score"])[:self.params.maxDets[-1]]
        return spatiotemporal_ious([d["segmentation"] for d in dt],
                                   [g["segmentation"] for g in gt], [g["iscrowd"] for g in gt])


def _segm_metrics(gt, gt_tracks, dt_tracks):
    """AP / AR (percent; NaN where no GT falls in the setting) of ``load_tracks``' tracks."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_eval = YTVISeval(_VideoCOCO(gt, gt_tracks), _VideoCOCO(gt, dt_tracks))
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return OrderedDict((name, float(coco_eval.stats[i]) * 100 if coco_eval.stats[i] >= 0
                        else float("nan")) for name, i in SEGM_STATS.items())


def compute_segm_metrics(gt, results):
    """``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"}`` (percent) of ``results``
    (official format) against ``gt`` (a parsed YouTube-VIS file with annotations)."""
    return _segm_metrics(gt, *load_tracks(gt, results))


def _frame_ids(tracks, length):
    """Per frame, the indices (0..N-1 over the tracks with a mask in some frame) and RLEs of
    the tracks with a mask there; and N."""
    present = [t for t in tracks if any(s is not None for s in t["segmentation"])]
    ids = [np.array([i for i, track in enumerate(present) if track["segmentation"][t] is not None],
                    dtype=int) for t in range(length)]
    rles = [[present[i]["segmentation"][t] for i in ids[t]] for t in range(length)]
    return ids, rles, len(present)


def _mask_ious(gt_rles, tracker_rles):
    """[len(gt_rles), len(tracker_rles)] mask IoU of one frame."""
    if not gt_rles or not tracker_rles:
        return np.zeros((len(gt_rles), len(tracker_rles)))
    return np.asarray(mask_util.iou(gt_rles, tracker_rles, [0] * len(tracker_rles)))


def _sequence_data(gt_tracks, tracker_tracks, length):
    """TrackEval's input for one video (ids relabelled 0..N-1, mask IoU similarities)."""
    gt_ids, gt_rles, num_gt_ids = _frame_ids(gt_tracks, length)
    tracker_ids, tracker_rles, num_tracker_ids = _frame_ids(tracker_tracks, length)
    return {"num_timesteps": length, "num_gt_ids": num_gt_ids,
            "num_tracker_ids": num_tracker_ids,
            "num_gt_dets": sum(len(i) for i in gt_ids),
            "num_tracker_dets": sum(len(i) for i in tracker_ids),
            "gt_ids": gt_ids, "tracker_ids": tracker_ids,
            "similarity_scores": [_mask_ious(g, d) for g, d in zip(gt_rles, tracker_rles)]}


def _identity_metrics(gt, gt_tracks, dt_tracks, id_score_threshold):
    """IDF1, IDSW, MOTA, HOTA, DetA, AssA (percent; IDSW a count) of ``load_tracks``' tracks."""
    from trackeval.metrics import CLEAR, HOTA, Identity  # here: it imports scipy (~0.5 s)

    metrics = [CLEAR({"PRINT_CONFIG": False}), Identity({"PRINT_CONFIG": False}), HOTA()]
    gts, trackers = defaultdict(list), defaultdict(list)
    for track in gt_tracks:
        if not track["iscrowd"]:
            gts[track["image_id"]].append(track)
    for track in dt_tracks:
        if track["score"] >= id_score_threshold:
            trackers[track["image_id"]].append(track)
    per_video = {metric.get_name(): {} for metric in metrics}
    for video in gt["videos"]:
        data = _sequence_data(gts[video["id"]], trackers[video["id"]], _video_length(video))
        for metric in metrics:
            per_video[metric.get_name()][video["id"]] = metric.eval_sequence(data)
    clear, identity, hota = (metric.combine_sequences(per_video[metric.get_name()])
                             for metric in metrics)
    return OrderedDict([("IDF1", 100 * float(identity["IDF1"])), ("IDSW", int(clear["IDSW"])),
                        ("MOTA", 100 * float(clear["MOTA"])),
                        ("HOTA", 100 * float(np.mean(hota["HOTA"]))),
                        ("DetA", 100 * float(np.mean(hota["DetA"]))),
                        ("AssA", 100 * float(np.mean(hota["AssA"])))])


def compute_identity_metrics(gt, results, id_score_threshold=0.5):
    """Class-agnostic ``{"IDF1", "IDSW", "MOTA", "HOTA", "DetA", "AssA"}`` (percent; IDSW a
    count, HOTA / DetA / AssA averaged over TrackEval's alphas) of the result tracks scoring at
    least ``id_score_threshold`` against the non-crowd GT tracks, per frame on mask IoU."""
    return _identity_metrics(gt, *load_tracks(gt, results), id_score_threshold)


def _json_rle(rle):
    """An RLE as JSON takes it (counts as str); None stays None."""
    if rle is None:
        return None
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _read_ground_truth(dataset_name):
    """The parsed ``json_file`` of the dataset's metadata; a clear error naming both when the
    metadata has none or the file does not exist."""
    json_file = MetadataCatalog.get(dataset_name).get("json_file")
    if json_file is None:
        raise ValueError(f"dataset '{dataset_name}' has no json_file in its metadata: the "
                         "YouTube-VIS evaluator needs its annotation file")
    if not PathManager.isfile(json_file):
        raise FileNotFoundError(f"dataset '{dataset_name}': annotation file not found: "
                                f"{json_file}")
    with PathManager.open(json_file) as f:
        return json.load(f)


class YTVISEvaluator(DatasetEvaluator):
    """YouTube-VIS AP / AR of the result tracks of every video (``"segm"``, or ``"bbox"`` for
    box tracks) and identity metrics of those scoring at least ``id_score_threshold``
    (``"tracking"``, on box IoU for box tracks); writes the
    official result file ``results.json`` to ``output_dir``. The annotation file and category
    mapping are read from the dataset's metadata when evaluating (a video dataset sets them
    when it is loaded)."""

    def __init__(self, dataset_name, output_dir=None, id_score_threshold=0.5):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._id_score_threshold = id_score_threshold
        self._predictions = []
        self._box_tracks = False

    def reset(self):
        self._predictions = []
        self._box_tracks = False

    def process(self, inputs, outputs):
        """Keeps each video's tracks (category contiguous until ``evaluate``); an output's
        ``"region_key": "bboxes"`` says its model gives box tracks (also when it has none). A
        track's ``"hypothesis"`` (``VideoTrackResults``: 0 for its own class, 1, 2, ... for the
        next classes of the same track) keeps the identity metrics to one result per track."""
        for video, output in zip(inputs, outputs):
            self._box_tracks |= output.get("region_key") == "bboxes"
            for track in output["tracks"]:
                key = _region_key(track)
                _check_length(video["video_id"], track[key], video["length"], key)
                regions = track[key] if key == "bboxes" else [_json_rle(s) for s in track[key]]
                self._predictions.append({
                    "video_id": video["video_id"], "category_id": track["category_id"],
                    "score": float(track["score"]), key: regions,
                    "hypothesis": int(track.get("hypothesis", 0))})

    def _official_results(self, predictions):
        """The predictions with the dataset's category ids."""
        to_dataset_id = {contiguous: dataset_id for dataset_id, contiguous in MetadataCatalog.get(
            self._dataset_name).thing_dataset_id_to_contiguous_id.items()}
        results = []
        for prediction in predictions:
            if prediction["category_id"] not in to_dataset_id:
                raise ValueError(f"video {prediction['video_id']}: a track has category "
                                 f"{prediction['category_id']}, not a class of "
                                 f"'{self._dataset_name}'")
            results.append({k: v for k, v in prediction.items() if k != "hypothesis"} |
                           {"category_id": to_dataset_id[prediction["category_id"]]})
        return results

    def _write(self, results):
        PathManager.mkdirs(self._output_dir)
        path = os.path.join(self._output_dir, "results.json")
        with PathManager.open(path, "w") as f:
            json.dump(results, f)
        logger.info("Wrote %d result tracks to %s", len(results), path)

    def _log_identity_subset(self, own_class, results):
        """Says which result tracks the identity metrics count, a warning when none."""
        counted = sum(t["score"] >= self._id_score_threshold for t in own_class)
        line = (f"{self._dataset_name}: identity metrics (IDF1, IDSW, MOTA, HOTA) count "
                f"{counted} of the {results} result tracks: each track once (its own class, "
                f"{results - len(own_class)} class hypotheses left out), scoring at least "
                f"{self._id_score_threshold} (TEST.VIDEO_ID_SCORE_THRESH)")
        (logger.warning if results and not counted else logger.info)(line)

    def evaluate(self):
        comm.synchronize()
        predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
        box_tracks = any(comm.gather(self._box_tracks, dst=0))
        if not comm.is_main_process():
            return {}
        gt = _read_ground_truth(self._dataset_name)
        results = self._official_results(predictions)
        if self._output_dir:
            self._write(results)
        if gt.get("annotations") is None:
            logger.warning("%s has no annotations (a split scored by the YouTube-VIS server): "
                           "it cannot be scored here", self._dataset_name)
            return {}
        boxes = box_tracks or any(_region_key(result) == "bboxes" for result in results)
        gt_tracks, dt_tracks = load_tracks(gt, results, boxes)
        own_class = [t for t, p in zip(dt_tracks, predictions) if p["hypothesis"] == 0]
        self._log_identity_subset(own_class, len(dt_tracks))
        scores = OrderedDict([("bbox" if boxes else "segm", _segm_metrics(gt, gt_tracks,
                                                                           dt_tracks)),
                              ("tracking", _identity_metrics(gt, gt_tracks, own_class,
                                                             self._id_score_threshold))])
        for task, values in scores.items():
            logger.info("Evaluation results for %s of %s:\n%s", task, self._dataset_name,
                        create_small_table(values))
        return scores
