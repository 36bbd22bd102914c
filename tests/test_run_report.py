"""The files a run writes for people (``rtinst.reports``), on a real 10-iteration BlendMask run
with evaluation every 5 iterations on 12 images of the embedded shapes data: each file exists,
and agrees with what the evaluator returned (``copypaste`` lines of the log, per-class AP of
``metrics.json``) and with the ground truth; then ``--eval-only`` on its weights, TensorBoard's
reader on its events, and ``tools/compare_methods.py`` on the two finished runs."""
import csv
import html.parser
import json
import re
from pathlib import Path

import numpy as np
import pytest
from train_net_runner import ROOT, SHORT_SHAPES_RUN, read_metrics, run_train_net

from rtinst.data.datasets import ensure_generated
from rtinst.reports.confusion_matrix import read_confusion_csv
from rtinst.reports.training_log import read_results_csv

pytestmark = pytest.mark.slow

CONFIG = ROOT / "configs/BlendMask/MNV2_FPN_shapes.yaml"
VAL_IMAGES = 12
RUN_FILES = ("results.csv", "curves.png", "per_class.csv", "per_class.png", "pr_curves.csv",
             "pr_curves_bbox.png", "pr_curves_segm.png", "confusion_matrix.csv",
             "confusion_matrix.png", "gallery.jpg", "report.html")
COPYPASTE = re.compile(r"copypaste: Task: (\w+)\n.*copypaste: ([\w,]+)\n.*copypaste: ([\d.,na]+)")


@pytest.fixture(scope="module")
def val_subset(tmp_path_factory):
    """(dataset spec, COCO annotations) of the first ``VAL_IMAGES`` images of shapes_val."""
    root = Path(ensure_generated())
    coco = json.loads((root / "annotations" / "val.json").read_text())
    images = coco["images"][:VAL_IMAGES]
    ids = {image["id"] for image in images}
    coco = {**coco, "images": images,
            "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}
    path = tmp_path_factory.mktemp("subset") / "val12.json"
    path.write_text(json.dumps(coco))
    return f"report_val={path},{root / 'val'}", coco


def copypaste_results(log):
    """{task: {metric: value}} from the ``copypaste:`` lines Detectron2 prints of the results
    the evaluator returned (4 decimals)."""
    found = {}
    for task, names, values in COPYPASTE.findall(log):
        found[task] = dict(zip(names.split(","), map(float, values.split(","))))
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory, val_subset):
    out = tmp_path_factory.mktemp("run") / "blendmask"
    result = run_train_net(
        CONFIG, "--dataset", val_subset[0], *SHORT_SHAPES_RUN,
        "SOLVER.MAX_ITER", "10", "TEST.EVAL_PERIOD", "5", "DATASETS.TEST", "('report_val',)",
        "INPUT.MIN_SIZE_TEST", "160", "INPUT.MAX_SIZE_TEST", "224",
        # after 5 iterations cls x ctr (what THRESH_WITH_CTR thresholds, as AdelaiDet) is still
        # below 0.05 everywhere: the first evaluation needs detections to report AP
        "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
        "TEST.REPORT.GALLERY_IMAGES", "4", "OUTPUT_DIR", str(out), timeout=900,
    )
    return out, result.stdout + result.stderr


def test_every_file_is_written(trained):
    out, log = trained
    missing = [name for name in RUN_FILES if not (out / name).is_file()]
    assert not missing, f"{out} lacks {missing}; log:\n{log[-3000:]}"


def test_results_csv_has_the_losses_and_the_evaluators_final_aps(trained):
    out, log = trained
    rows = read_results_csv(out / "results.csv")
    logged = [r for r in read_metrics(out) if "total_loss" in r]
    training = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in training] == [r["iteration"] for r in logged]
    for row, record in zip(training, logged):
        for key in ("total_loss", "loss_fcos_cls", "loss_basis_semantic", "loss_mask", "lr"):
            assert row[key] == record[key], key
    evaluations = [r for r in rows if "bbox/AP" in r]
    assert len(evaluations) == 2  # iterations 5 and 10
    returned = copypaste_results(log)
    assert set(returned) == {"bbox", "segm"}
    for task, metrics in returned.items():
        for metric, value in metrics.items():
            assert evaluations[-1][f"{task}/{metric}"] == pytest.approx(value, abs=1e-4), \
                (task, metric)


def test_per_class_ap_is_the_evaluators(trained):
    out, _ = trained
    final = [r for r in read_metrics(out) if "bbox/AP" in r][-1]
    with open(out / "per_class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    for row in rows:
        for task in ("bbox", "segm"):
            expected = final[f"{task}/AP-{row['class']}"]
            got = float(row[f"{task} AP"])
            assert got == pytest.approx(expected, abs=1e-9) or (np.isnan(got)
                                                                  and np.isnan(expected))


def pr_curves(out):
    curves = {}
    with open(out / "pr_curves.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["task"], row["iou"], row["class"])
            curves.setdefault(key, []).append((float(row["recall"]), float(row["precision"])))
    return curves


def test_pr_curve_areas_are_the_evaluators_aps(trained):
    """The area under each written curve (trapezoids over recall 0..1) is the AP the evaluator
    gave for that class and IoU, within 0.01 (AP as a fraction)."""
    out, _ = trained
    final = [r for r in read_metrics(out) if "bbox/AP" in r][-1]
    curves = pr_curves(out)
    checked = 0
    for (task, iou, name), points in curves.items():
        recall, precision = np.array(points).T
        assert recall[0] == 0 and recall[-1] == 1 and len(recall) == 101
        area = np.trapezoid(precision, recall)
        if name == "all classes":
            expected = final[f"{task}/AP" if iou == "0.5:0.95" else f"{task}/AP50"]
        elif iou == "0.5:0.95":
            expected = final[f"{task}/AP-{name}"]
        else:
            continue  # the evaluator reports no per-class AP50
        assert area * 100 == pytest.approx(expected, abs=1.0), (task, iou, name)
        checked += 1
    assert checked >= 2 * 2  # both tasks, overall and at least one class


def test_confusion_matrix_rows_count_the_ground_truth(trained, val_subset):
    out, _ = trained
    coco = val_subset[1]
    labels, matrix = read_confusion_csv(out / "confusion_matrix.csv")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert labels == [*names.values(), "background"]
    expected = [sum(1 for a in coco["annotations"] if a["category_id"] == cid
                    and not a.get("iscrowd")) for cid in names]
    assert matrix[:-1].sum(axis=1).tolist() == expected
    assert matrix[-1, -1] == 0


class References(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found += [value for key, value in attrs if key in ("src", "href")]


def references(page):
    parser = References()
    parser.feed(page.read_text())
    return parser.found


def test_report_page_refers_only_to_files_that_exist(trained):
    out, _ = trained
    page = out / "report.html"
    found = references(page)
    assert {"curves.png", "gallery.jpg", "confusion_matrix.png", "pr_curves_segm.png"} <= \
        set(found)
    assert all((page.parent / ref).is_file() for ref in found), found


def test_tensorboard_lists_the_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = trained
    events = EventAccumulator(str(out))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"total_loss", "loss_mask", "lr", "bbox/AP", "segm/AP"} <= scalars
    assert [e.step for e in events.Scalars("segm/AP")] == [4, 10]


@pytest.fixture(scope="module")
def evaluated(trained, val_subset):
    out, _ = trained
    folder = out.parent / "eval"
    result = run_train_net(
        CONFIG, "--eval-only", "--dataset", val_subset[0], *SHORT_SHAPES_RUN,
        "DATASETS.TEST", "('report_val',)", "INPUT.MIN_SIZE_TEST", "160",
        "INPUT.MAX_SIZE_TEST", "224", "TEST.REPORT.GALLERY_IMAGES", "2",
        "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(folder), timeout=600,
    )
    return folder, result.stdout + result.stderr


def test_eval_only_report_has_the_weights_training_history(trained, evaluated):
    folder, log = evaluated
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    assert not missing, f"{folder} lacks {missing}"
    rows = read_results_csv(folder / "results.csv")
    history = read_results_csv(trained[0] / "results.csv")
    training = [{k: v for k, v in r.items() if "/" not in k} for r in history]
    # the run beside the weights, with this evaluation where it logged its final one
    assert [{k: v for k, v in r.items() if "/" not in k} for r in rows] == training
    last = rows[-1]
    assert last["iteration"] == 10 and history[-1]["iteration"] == 10
    for task, metrics in copypaste_results(log).items():
        for metric, value in metrics.items():
            assert last[f"{task}/{metric}"] == pytest.approx(value, abs=1e-4)


def test_compare_methods_writes_the_comparison_page(trained, evaluated, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_methods",
                                                  ROOT / "tools/compare_methods.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"models": [
        {"label": "trained", "config": "x.yaml", "runtime": "pytorch", "median_ms": 80.0},
        {"label": "evaluated", "config": "y.yaml", "runtime": "pytorch", "median_ms": 95.0},
    ]}))
    page_dir = tmp_path / "page"
    tool.main(["--output", str(page_dir), "--runs", f"trained={trained[0]}",
               f"evaluated={evaluated[0]}", "--benchmark", str(bench),
               "--markdown", str(tmp_path / "table.md")])
    page = page_dir / "report.html"
    found = references(page)
    assert {"curves.png", "speed_accuracy.png"} <= set(found)
    assert len({ref for ref in found if ref.endswith("gallery.jpg")}) == 2  # side by side
    assert all((page.parent / ref).is_file() for ref in found), found
    table = (tmp_path / "table.md").read_text()
    assert "| latency ms |" in table and "| 80.0 |" in table and "| 95.0 |" in table
