"""``rtinst.reports`` on small hand-made cases: the results table, the precision-recall curves
and their areas, the confusion matrix, the HTML page, the comparison page and the benchmark's
latency plot."""
import json

import numpy as np
import pytest

from rtinst.benchmark.plot import latency_series, plot_latency
from rtinst.reports.comparison import write_comparison
from rtinst.reports.confusion_matrix import (
    confusion_matrix,
    greedy_matches,
    read_confusion_csv,
    row_normalised,
)
from rtinst.reports.html_page import Page
from rtinst.reports.instances import ImageInstances
from rtinst.reports.precision import PrecisionArray
from rtinst.reports.training_log import (
    columns,
    read_metrics,
    read_results_csv,
    results_rows,
    write_results_csv,
)

RECORDS = [
    {"iteration": 19, "total_loss": 2.5, "loss_cls": 1.5, "loss_box": 1.0, "lr": 0.01,
     "time": 0.7, "data_time": 0.1},
    {"iteration": 39, "total_loss": 1.25, "loss_cls": 0.75, "loss_box": 0.5, "lr": 0.02,
     "time": 0.7, "data_time": 0.1},
    {"iteration": 39, "bbox/AP": 12.345678901234567, "bbox/AP-circle": 7.0, "segm/AP": 10.5},
]


def test_results_rows_merge_an_iteration_and_leave_per_class_ap_out():
    rows = results_rows(list(reversed(RECORDS)))
    assert [r["iteration"] for r in rows] == [19, 39]
    assert rows[1]["total_loss"] == 1.25 and rows[1]["bbox/AP"] == 12.345678901234567
    assert "bbox/AP-circle" not in rows[1]
    assert columns(rows) == ["iteration", "total_loss", "loss_cls", "loss_box", "lr", "time",
                             "data_time", "bbox/AP", "segm/AP"]


def test_eval_only_results_are_merged_in_and_written_exactly(tmp_path):
    rows = results_rows(RECORDS[:1], {"bbox/AP": 1 / 3, "bbox/AP-star": 2.0}, iteration=99)
    write_results_csv(tmp_path / "results.csv", rows)
    back = read_results_csv(tmp_path / "results.csv")
    assert back == [{k: float(v) for k, v in RECORDS[0].items()},
                    {"iteration": 99.0, "bbox/AP": 1 / 3}]
    again = results_rows(RECORDS, {"bbox/AP": 50.0}, iteration=39)  # the same weights' iteration
    assert len(again) == 2 and again[1]["bbox/AP"] == 50.0 and again[1]["total_loss"] == 1.25


def test_metrics_json_cut_off_by_a_kill_loses_only_its_last_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + '{"iteration": 39, "total_lo')
    assert read_metrics(path) == RECORDS[:1]
    path.write_text('{"iteration": 1\n' + json.dumps(RECORDS[0]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.json, line 1"):
        read_metrics(path)


def precision_array():
    """2 IoU thresholds (0.5, 0.55), 3 recall points, 3 classes (the last without ground
    truth)."""
    precision = np.full((2, 3, 3), -1.0)
    precision[0, :, 0] = [1.0, 0.5, 0.0]
    precision[1, :, 0] = [0.5, 0.5, 0.0]
    precision[0, :, 1] = [1.0, 1.0, 1.0]
    precision[1, :, 1] = [1.0, 1.0, 0.5]
    return PrecisionArray(precision, np.array([0.5, 0.55]), np.array([0.0, 0.5, 1.0]),
                          ["a", "b", "c"])


def test_curves_and_ap_from_the_precision_array():
    array = precision_array()
    assert array.curve("0.5", 0).tolist() == [1.0, 0.5, 0.0]
    assert array.curve("0.5:0.95", 0).tolist() == [0.75, 0.5, 0.0]
    assert array.curve("0.5").tolist() == [1.0, 0.75, 0.5]  # mean over classes a and b
    assert array.curve("0.5", 2) is None
    assert array.average_precision("0.5", 0) == pytest.approx(50.0)
    assert array.average_precision("0.5:0.95", 1) == pytest.approx(100 * 5.5 / 6)
    assert array.average_precision("0.5:0.95") == pytest.approx(100 * 8.0 / 12)
    assert np.isnan(array.average_precision("0.5", 2))
    with pytest.raises(ValueError, match="IoU 0.75"):
        array.curve("0.75", 0)


def test_saved_arrays_load_with_their_class_names(tmp_path):
    from types import SimpleNamespace

    from rtinst.evaluation.coco_evaluation import save_precision

    precision = np.random.default_rng(0).random((10, 101, 2, 4, 3))
    params = SimpleNamespace(iouThrs=np.linspace(0.5, 0.95, 10), recThrs=np.linspace(0, 1, 101),
                             areaRngLbl=["all", "small", "medium", "large"], maxDets=[1, 10, 100])
    save_precision(tmp_path / "p.npz", SimpleNamespace(params=params,
                                                       eval={"precision": precision}), ["x", "y"])
    array = PrecisionArray.load(tmp_path / "p.npz")
    assert array.class_names == ["x", "y"]
    assert np.array_equal(array.precision, precision[:, :, :, 0, -1])  # all areas, 100 dets


def test_matching_goes_by_score_then_iou():
    ious = np.array([[0.9, 0.6], [0.8, 0.4], [0.55, 0.3]])
    # prediction 1 (0.9) takes ground truth 0; prediction 2 (0.7) has nothing left from 0.5;
    # prediction 0 (0.5) takes ground truth 1
    assert greedy_matches(ious, [0.5, 0.9, 0.7], 0.5) == [(1, 0), (0, 1)]
    assert greedy_matches(ious, [0.9, 0.5, 0.7], 0.5) == [(0, 0)]
    assert greedy_matches(np.zeros((2, 0)), [0.5, 0.4], 0.5) == []


def boxes(*xywh):
    return [list(map(float, b)) for b in xywh]


def test_confusion_matrix_by_hand():
    """Classes 0, 1. Image 1: a class-0 box found as class 1, a class-1 box found right, a
    class-1 box missed, a false detection and one under the score threshold. Image 2: a crowd
    region with a detection on it (neither counted) and a class-0 box found right."""
    truth_1 = ImageInstances(boxes([0, 0, 10, 10], [20, 0, 10, 10], [40, 0, 10, 10]),
                             np.array([0, 1, 1]), crowd=np.zeros(3, bool))
    predicted_1 = ImageInstances(
        boxes([1, 0, 10, 10], [20, 0, 10, 10], [0, 40, 10, 10], [40, 0, 10, 10]),
        np.array([1, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.1]))
    truth_2 = ImageInstances(boxes([0, 0, 50, 50], [60, 60, 10, 10]), np.array([1, 0]),
                             crowd=np.array([True, False]))
    predicted_2 = ImageInstances(boxes([5, 5, 20, 20], [60, 60, 10, 11]), np.array([0, 0]),
                                 np.array([0.9, 0.9]))
    matrix = confusion_matrix([(truth_1, predicted_1), (truth_2, predicted_2)], 2,
                              score_threshold=0.25, iou_threshold=0.5)
    assert matrix.tolist() == [
        [1, 1, 0],  # class 0: one right (image 2), one as class 1
        [0, 1, 1],  # class 1: one right, one missed
        [1, 0, 0],  # background: the false class-0 detection
    ]
    assert row_normalised(matrix)[1].tolist() == [0.0, 0.5, 0.5]


def test_an_image_without_predictions_counts_its_ground_truth_as_missed():
    truth = ImageInstances(boxes([0, 0, 5, 5]), np.array([1]), crowd=np.zeros(1, bool))
    nothing = ImageInstances([], np.zeros(0, int), np.zeros(0))
    assert confusion_matrix([(truth, nothing)], 2, 0.25, 0.5)[1].tolist() == [0, 0, 1]


def test_page_refers_only_to_existing_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"png")
    page = Page(tmp_path, "t <&>")
    page.image(tmp_path / "sub" / "a.png", "a")
    page.image(tmp_path / "missing.png", "b")
    page.links([tmp_path / "sub" / "a.png", tmp_path / "missing.csv"])
    text = page.write().read_text()
    assert 'src="sub/a.png"' in text and "missing" not in text and "t &lt;&amp;&gt;" in text
    assert page.missing == [str(tmp_path / "missing.png"), str(tmp_path / "missing.csv")]


def fake_run(folder, ap):
    folder.mkdir()
    records = [{"iteration": 9, "total_loss": 2.0 - ap / 100, "lr": 0.01},
               {"iteration": 19, "total_loss": 1.0 - ap / 100, "lr": 0.01},
               {"iteration": 19, "bbox/AP": ap, "segm/AP": ap - 1}]
    (folder / "metrics.json").write_text("\n".join(json.dumps(r) for r in records))
    return folder


def test_comparison_page(tmp_path):
    runs = {"one": fake_run(tmp_path / "one", 30.0), "two": fake_run(tmp_path / "two", 40.0)}
    files = write_comparison(runs, tmp_path / "page", {"one": 50.0})
    assert set(files) == {"curves", "speed_accuracy", "report"}
    text = files["report"].read_text()
    assert "<td>one</td><td>30.0</td>" in text and "<td>50.0</td>" in text
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        write_comparison({"x": tmp_path}, tmp_path / "page")


def test_latency_series_and_plot(tmp_path):
    def row(label, k, ms, baseline=False):
        return {"label": label, "num_detections": k, "detections_mean": 7.5,
                "median_ms": ms, "times_ms": [ms - 1, ms, ms + 1], "baseline": baseline}

    report = {"environment": {"device_name": "cpu", "threads": 2},
              "settings": {"input_size": "320"},
              "models": [row("base", 100, 30.0, True), row("m", 100, 20.0),
                         row("base", 10, 10.0, True), row("m", 10, 5.0), row("own", None, 8.0)]}
    series = latency_series(report)
    assert series["m"] == (False, [(10, 5.0, 4.2, 5.8), (100, 20.0, 19.2, 20.8)])
    assert series["base"][0] and series["own"][1][0][0] == 7.5
    assert plot_latency(report, tmp_path / "l.png").stat().st_size > 1000


def tiny_dataset(folder, name):
    """A registered COCO dataset of 4 blank 80 x 80 images, 2-3 squares of 16 px each in the
    upper 56 rows, classes a / b."""
    import cv2
    from detectron2.data import DatasetCatalog

    from rtinst.data.datasets import register_coco_dataset

    rng = np.random.default_rng(0)
    (folder / "images").mkdir()
    images, annotations = [], []
    for i in range(4):
        cv2.imwrite(str(folder / "images" / f"{i}.png"), np.full((80, 80, 3), 90, np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 80, "height": 80})
        for j in range(2 + i % 2):
            x, y = 4 + 20 * j, int(rng.integers(2, 40))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": 0,
                                "category_id": 1 + (i + j) % 2, "bbox": [x, y, 16, 16],
                                "area": 256,
                                "segmentation": [[x, y, x + 16, y, x + 16, y + 16, x, y + 16]]})
    path = folder / "tiny.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    register_coco_dataset(name, str(path), str(folder / "images"))
    DatasetCatalog.get(name)  # as the test loader does: sets the category id mapping
    return annotations


def predictions_for(annotations, image_id, rng):
    """Each square found with a box shifted by at most 2 px (IoU >= 0.62), its class flipped
    one time in four, scores random, plus one false detection away from every square."""
    import torch
    from detectron2.structures import Boxes, Instances

    boxes, classes = [], []
    for a in annotations:
        if a["image_id"] == image_id:
            x, y, w, h = a["bbox"]
            dx, dy = rng.integers(-2, 3, 2)
            boxes.append([x + dx, y + dy, x + dx + w, y + dy + h])
            flip = rng.random() < 0.25
            classes.append((a["category_id"] - 1) ^ int(flip))
    boxes.append([60, 62, 78, 78])
    classes.append(0)
    instances = Instances((80, 80))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    instances.scores = torch.tensor(rng.random(len(boxes)) * 0.7 + 0.3, dtype=torch.float32)
    instances.pred_classes = torch.tensor(classes)
    masks = torch.zeros(len(boxes), 80, 80, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, max(y0, 0):y1, max(x0, 0):x1] = True
    instances.pred_masks = masks
    return instances


def test_report_of_an_evaluation_agrees_with_the_evaluator(tmp_path):
    """COCO evaluation of known predictions, then the run's report from its files: per-class
    AP equal to the evaluator's, each PR curve's area its AP (within 0.01), the confusion
    matrix's rows the ground truth per class, a page with only existing files."""
    import csv
    import re

    from rtinst.config import get_cfg
    from rtinst.evaluation import build_evaluator
    from rtinst.reports import write_run_report

    annotations = tiny_dataset(tmp_path, "reports_tiny")
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    cfg.DATASETS.TEST = ("reports_tiny",)
    cfg.TEST.REPORT.GALLERY_IMAGES = 2
    evaluator = build_evaluator(cfg, "reports_tiny", str(tmp_path / "run/inference/reports_tiny"))
    evaluator.reset()
    rng = np.random.default_rng(1)
    flipped = 0
    for image_id in range(1, 5):
        instances = predictions_for(annotations, image_id, rng)
        truth = [a["category_id"] - 1 for a in annotations if a["image_id"] == image_id]
        flipped += sum(int(c) != t for c, t in zip(instances.pred_classes, truth))
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
    results = evaluator.evaluate()
    assert 20 < results["segm"]["AP"] < 90  # neither trivial nor perfect
    files = write_run_report(cfg, results)

    with open(files["per_class_csv"], newline="") as f:
        per_class = {row["class"]: row for row in csv.DictReader(f)}
    curves = {}
    with open(files["pr_curves_csv"], newline="") as f:
        for row in csv.DictReader(f):
            curves.setdefault((row["task"], row["iou"], row["class"]), []).append(
                (float(row["recall"]), float(row["precision"])))
    for task in ("bbox", "segm"):
        for name in ("a", "b"):
            assert float(per_class[name][f"{task} AP"]) == pytest.approx(
                results[task][f"AP-{name}"])
            recall, precision = np.array(curves[(task, "0.5:0.95", name)]).T
            assert np.trapezoid(precision, recall) * 100 == pytest.approx(
                results[task][f"AP-{name}"], abs=1.0)
        for iou, metric in (("0.5:0.95", "AP"), ("0.5", "AP50")):
            recall, precision = np.array(curves[(task, iou, "all classes")]).T
            assert np.trapezoid(precision, recall) * 100 == pytest.approx(
                results[task][metric], abs=1.0)
    _, matrix = read_confusion_csv(files["confusion_csv"])
    counts = [sum(a["category_id"] == c for a in annotations) for c in (1, 2)]
    assert matrix[:2].sum(axis=1).tolist() == counts
    assert matrix[:2, 2].sum() == 0  # every square found ...
    assert matrix[:2, :2].trace() == sum(counts) - flipped  # ... as its class, unless flipped
    assert matrix[2].tolist() == [4, 0, 0]  # the four false detections (scores >= 0.3)
    page = files["report"].read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "gallery.jpg" in refs and all((files["report"].parent / r).is_file() for r in refs)
    (row,) = read_results_csv(files["results"])  # no training log: the evaluation only
    np.testing.assert_equal(row, {f"{task}/{k}": v for task in ("bbox", "segm")
                                  for k, v in results[task].items() if "-" not in k})


def test_video_evaluation_has_its_own_columns_and_labelled_curves(tmp_path):
    """``--eval-only`` on a video dataset of weights whose training evaluated an image dataset
    at the same iteration: the video AP and tracking metrics are named by their dataset, the
    image mask AP stays in ``segm/AP``; curves.png's panels label each line with its dataset."""
    from rtinst.config import get_cfg
    from rtinst.reports import write_run_report
    from rtinst.reports.curves import curves_figure
    from rtinst.reports.run_report import logged_dataset

    trained = tmp_path / "trained"
    fake_run(trained, 40.0)  # segm/AP 39.0 at iteration 19
    (trained / "config.yaml").write_text("DATASETS:\n  TEST:\n  - shapes_val\n")
    (trained / "model_final.pth").write_bytes(b"")
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = str(trained / "model_final.pth")
    cfg.OUTPUT_DIR = str(tmp_path / "eval")
    cfg.DATASETS.TEST = ("shapes_video_val",)
    video = {"segm": {"AP": 12.0, "AP50": 29.0}, "tracking": {"IDF1": 40.4, "IDSW": 35}}
    files = write_run_report(cfg, video, iteration=19)
    with open(files["results"]) as f:
        header = f.readline().strip().split(",")
    assert header[-6:] == ["bbox/AP", "segm/AP", "shapes_video_val/segm/AP",
                           "shapes_video_val/segm/AP50", "shapes_video_val/tracking/IDF1",
                           "shapes_video_val/tracking/IDSW"]
    last = read_results_csv(files["results"])[-1]
    assert last["segm/AP"] == 39.0 and last["shapes_video_val/segm/AP"] == 12.0
    assert last["shapes_video_val/tracking/IDF1"] == 40.4

    rows = read_results_csv(files["results"])
    figure = curves_figure({"run": rows}, logged_dataset(cfg, trained / "metrics.json"))
    legends = {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()]
               for ax in figure.axes if ax.get_legend()}
    assert legends == {"bbox/AP": ["shapes_val"], "segm/AP": ["shapes_val", "shapes_video_val"],
                       "segm/AP50": ["shapes_video_val"], "tracking/IDF1": ["shapes_video_val"],
                       "tracking/IDSW": ["shapes_video_val"]}
