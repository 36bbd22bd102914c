"""Everything a run writes for people to look at, into its ``OUTPUT_DIR``, after training or
``--eval-only``:

- ``results.csv`` and ``curves.png``: every logged loss, the learning rate and times per
  iteration, and box / mask AP per evaluation (``training_log``, ``curves``); a video
  dataset's results (video AP, the tracking metrics) are named by the dataset
  (``shapes_video_val/segm/AP``, ``shapes_video_val/tracking/IDF1``), never sharing a column
  with an image evaluation's ``segm/AP``;
- per test dataset with COCO evaluation (names prefixed ``<dataset>_`` when ``DATASETS.TEST``
  has several): ``per_class.csv`` / ``per_class.png``, ``pr_curves.csv`` /
  ``pr_curves_<task>.png``, ``confusion_matrix.csv`` / ``confusion_matrix.png`` and
  ``gallery.jpg`` (``TEST.REPORT.*``);
- ``report.html``: all of them on one page with the config and the environment.
"""
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.testing import flatten_results_dict

from rtinst.data.ytvis import is_video_dataset
from rtinst.evaluation.coco_evaluation import PRECISION_FILE
from rtinst.utils.environment import environment_info

from .confusion_matrix import confusion_matrix, plot_confusion, write_confusion_csv
from .curves import plot_curves
from .gallery import write_gallery
from .html_page import Page, number, table
from .instances import ImageInstances, ground_truth, predictions_by_image, results_by_image
from .per_class import per_class_rows, plot_per_class, write_per_class_csv
from .pr_curves import TASK_NAMES, curve_rows, plot_pr_curves, write_curves_csv
from .precision import PrecisionArray
from .training_log import (
    RESULTS_FILE,
    final_evaluation,
    named_by_dataset,
    read_metrics,
    results_rows,
    write_results_csv,
)

logger = logging.getLogger(__name__)

TASKS = ("bbox", "segm")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
PREDICTIONS_FILE = "coco_instances_results.json"
REPORT_FILE = "report.html"
ANALYSIS_SECTIONS = (
    ("AP per class", ("per_class_png",)),
    ("precision-recall (the area under a curve is its AP)", ("pr_curves_bbox", "pr_curves_segm")),
    ("confusion matrix", ("confusion_png",)),
    ("ground truth (left) and predictions (right)", ("gallery",)),
)


def evaluation_folder(output_dir, dataset_name):
    """Where ``Trainer.build_evaluator`` has the evaluator of ``dataset_name`` write."""
    return Path(output_dir) / "inference" / dataset_name


def training_history(cfg):
    """(records, path) of the run's ``metrics.json``: the one in ``OUTPUT_DIR``, else (for
    ``--eval-only``) the one beside a local ``MODEL.WEIGHTS`` (the run that trained them);
    ([], None) when there is none."""
    candidates = [Path(cfg.OUTPUT_DIR) / "metrics.json"]
    if cfg.MODEL.WEIGHTS and Path(cfg.MODEL.WEIGHTS).is_file():
        candidates.append(Path(cfg.MODEL.WEIGHTS).parent / "metrics.json")
    for path in candidates:
        if path.is_file():
            return read_metrics(path), path
    return [], None


def logged_dataset(cfg, history):
    """The dataset whose results ``history`` (a ``metrics.json``) logs without a name
    (``segm/AP``): the single ``DATASETS.TEST`` of the run that wrote it (its ``config.yaml``
    beside it, else ``cfg``'s); None when unknown."""
    datasets = cfg.DATASETS.TEST
    config = history.parent / "config.yaml" if history else None
    if config is not None and config.is_file():
        try:
            datasets = yaml.safe_load(config.read_text())["DATASETS"]["TEST"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return None
    return datasets[0] if isinstance(datasets, (list, tuple)) and len(datasets) == 1 else None


def _empty_predictions():
    return ImageInstances([], np.zeros(0, int), np.zeros(0))


class DatasetAnalysis:
    """The per-class, precision-recall, confusion-matrix and gallery files of one evaluated
    dataset, from its evaluator's files (``precision_<task>.npz``, the predictions)."""

    def __init__(self, cfg, output_dir, dataset_name, prefix):
        self.cfg, self.name, self.output = cfg, dataset_name, Path(output_dir)
        self.prefix = prefix
        folder = evaluation_folder(output_dir, dataset_name)
        self.arrays = {task: PrecisionArray.load(folder / PRECISION_FILE.format(task=task))
                       for task in TASKS
                       if (folder / PRECISION_FILE.format(task=task)).is_file()}
        path = folder / PREDICTIONS_FILE
        self.predictions = json.loads(path.read_text()) if path.is_file() else None
        self.metadata = MetadataCatalog.get(dataset_name)
        self.records = DatasetCatalog.get(dataset_name)
        self.files = {}
        self.per_class = []

    def path(self, name):
        return self.output / f"{self.prefix}{name}"

    def instance_counts(self):
        classes = self.metadata.get("thing_classes", [])
        counts = Counter(a["category_id"] for r in self.records
                         for a in r.get("annotations", []) if not a.get("iscrowd", 0))
        return {name: counts.get(k, 0) for k, name in enumerate(classes)}

    def mask_task(self):
        """"segm" when the predictions and the ground truth have masks, else "bbox"."""
        predicted = self.predictions and all("segmentation" in p for p in self.predictions)
        annotated = all("segmentation" in a for r in self.records
                        for a in r.get("annotations", []))
        return "segm" if predicted and annotated else "bbox"

    def write(self):
        report = self.cfg.TEST.REPORT
        if self.arrays:
            rows = self.per_class = per_class_rows(self.arrays, self.instance_counts())
            self.files["per_class_csv"] = write_per_class_csv(self.path("per_class.csv"), rows)
            self.files["per_class_png"] = plot_per_class(self.path("per_class.png"), rows,
                                                         list(self.arrays))
            self.files["pr_curves_csv"] = write_curves_csv(
                self.path("pr_curves.csv"),
                [row for task, array in self.arrays.items() for row in curve_rows(task, array)])
            for task, array in self.arrays.items():
                self.files[f"pr_curves_{task}"] = plot_pr_curves(
                    self.path(f"pr_curves_{task}.png"), task, array)
        if self.predictions is None:
            logger.info("%s: no %s from its evaluator: no confusion matrix or gallery",
                        self.name, PREDICTIONS_FILE)
            return self.files
        task = self.mask_task()
        grouped = results_by_image(self.predictions)
        by_image = predictions_by_image(grouped, self.metadata, task)
        pairs = [(ground_truth(r, task), by_image.get(r["image_id"], _empty_predictions()))
                 for r in self.records]
        classes = self.metadata.get("thing_classes")
        matrix = confusion_matrix(pairs, len(classes), report.SCORE_THRESH, report.IOU_THRESH)
        self.files["confusion_csv"] = write_confusion_csv(self.path("confusion_matrix.csv"),
                                                          matrix, classes)
        self.files["confusion_png"] = plot_confusion(
            self.path("confusion_matrix.png"), matrix, classes,
            f"{self.name}: {TASK_NAMES[task]} IoU >= {report.IOU_THRESH:g}, "
            f"score >= {report.SCORE_THRESH:g}, rows normalised")
        if report.GALLERY_IMAGES > 0 and self.records:
            self.files["gallery"] = write_gallery(
                self.path("gallery.jpg"), self.records[:report.GALLERY_IMAGES], grouped,
                self.metadata, report.GALLERY_SCORE_THRESH)
        return self.files


def _summary_rows(evaluation):
    """Rows (dataset/task, AP, AP50, ...) of the flattened final evaluation."""
    groups = {}
    for key, value in evaluation.items():
        group, _, metric = key.rpartition("/")
        if metric in METRICS:
            groups.setdefault(group, {})[metric] = value
    return [[g.replace("bbox", "box").replace("segm", "mask"),
             *(number(values.get(m)) for m in METRICS)] for g, values in groups.items()]


def write_run_report(cfg, evaluation=None, iteration=None):
    """Writes the run's files into ``cfg.OUTPUT_DIR`` (see the module's docstring) and returns
    {name: path}. ``evaluation``: results of an evaluation that ``metrics.json`` does not log
    (``--eval-only``), added to ``results.csv`` at ``iteration`` (the iterations the weights
    were trained for: where Detectron2 logs a run's final evaluation)."""
    output = Path(cfg.OUTPUT_DIR)
    output.mkdir(parents=True, exist_ok=True)
    records, history = training_history(cfg)
    flat = flatten_results_dict(evaluation) if evaluation else None
    if flat and iteration is None and records:
        iteration = max(r.get("iteration", 0) for r in records)
    video = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) == 1 else None
    if video is not None and is_video_dataset(video):  # Detectron2 names several by dataset
        flat = flat and named_by_dataset(flat, video)
        if evaluation is None:  # the training run's own log, of this config
            records = [named_by_dataset(r, video) for r in records]
    rows = results_rows(records, flat, iteration)
    files = {"results": write_results_csv(output / RESULTS_FILE, rows)}
    curves = plot_curves({"run": rows}, output / "curves.png", logged_dataset(cfg, history))
    if curves:
        files["curves"] = curves
    datasets = [name for name in cfg.DATASETS.TEST if not is_video_dataset(name)]
    analyses = []
    for name in datasets:
        if not evaluation_folder(output, name).is_dir():
            continue
        analysis = DatasetAnalysis(cfg, output, name, f"{name}_" if len(datasets) > 1 else "")
        files.update({f"{analysis.prefix}{k}": v for k, v in analysis.write().items()})
        analyses.append(analysis)
    files["report"] = _write_page(cfg, output, rows, history, analyses)
    logger.info("Report of the run: %s", files["report"])
    return files


def _write_page(cfg, output, rows, history, analyses):
    page = Page(output, f"rtinst run: {cfg.MODEL.META_ARCHITECTURE} — {output.name}")
    evaluation = final_evaluation(rows)
    page.heading("Results")
    if evaluation:
        page.raw(table(["dataset / task", *METRICS], _summary_rows(evaluation)))
    else:
        page.paragraph("No evaluation (DATASETS.TEST is empty, or no evaluator ran).")
    page.links([output / RESULTS_FILE, *([history] if history else [])])
    page.heading("Losses, learning rate and AP over the iterations")
    if history is not None and history.parent != output:
        page.paragraph(f"Training log of the weights: {history}")
    page.image(output / "curves.png", "curves")
    for analysis in analyses:
        for title, keys in ANALYSIS_SECTIONS:
            shown = [k for k in keys if k in analysis.files]
            if shown:
                page.heading(f"{analysis.name}: {title}")
                if "per_class_png" in shown and analysis.per_class:
                    page.raw(table(list(analysis.per_class[0]), [
                        [number(v) for v in row.values()] for row in analysis.per_class]))
                for key in shown:
                    page.image(analysis.files[key], title)
        page.links([analysis.files[k] for k in ("per_class_csv", "pr_curves_csv",
                                                "confusion_csv") if k in analysis.files])
    page.heading("Config")
    page.preformatted(cfg.dump())
    page.heading("Environment")
    env = environment_info(cfg.MODEL.DEVICE)
    page.raw(table(["", "value"], [[k, number(v) if not isinstance(v, list) else
                                    ", ".join(f"{x:.2f}" for x in v)] for k, v in env.items()]))
    return page.write(REPORT_FILE)
