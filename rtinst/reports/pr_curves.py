"""Precision-recall curves per class and over all classes, at IoU 0.5 and averaged over
0.5:0.95, from the evaluator's precision array: ``pr_curves.csv`` and
``pr_curves_<task>.png``."""
import csv

from .figures import save, subplot_grid
from .precision import ALL_CLASSES, IOU_SETTINGS

TASK_NAMES = {"bbox": "box", "segm": "mask"}
LEGEND_MAX_CLASSES = 15


def curve_rows(task, array):
    """Long-format rows (task, iou, class, recall, precision) of every curve of ``array``."""
    rows = []
    for iou in IOU_SETTINGS:
        for k, name in [(None, ALL_CLASSES), *enumerate(array.class_names)]:
            curve = array.curve(iou, k)
            if curve is None:
                continue
            rows += [{"task": task, "iou": iou, "class": name, "recall": float(r),
                      "precision": float(p)} for r, p in zip(array.recall_thresholds, curve)]
    return rows


def write_curves_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["task", "iou", "class", "recall", "precision"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_pr_curves(path, task, array):
    """Two panels (IoU 0.5, 0.5:0.95): a thin line per class, a thick one for all classes, each
    labelled with its AP (the curve's area)."""
    figure, axes = subplot_grid(len(IOU_SETTINGS), columns=2, size=(5.0, 4.5))
    legend = len(array.class_names) <= LEGEND_MAX_CLASSES
    for ax, iou in zip(axes, IOU_SETTINGS):
        for k, name in enumerate(array.class_names):
            curve = array.curve(iou, k)
            if curve is not None:
                ax.plot(array.recall_thresholds, curve, linewidth=1, alpha=0.7,
                        label=f"{name} {array.average_precision(iou, k):.1f}")
        overall = array.curve(iou)
        if overall is not None:
            ax.plot(array.recall_thresholds, overall, color="black", linewidth=2.5,
                    label=f"{ALL_CLASSES} {array.average_precision(iou):.1f}")
        ax.set_title(f"{TASK_NAMES.get(task, task)} precision-recall, IoU {iou}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if legend or overall is not None:
            handles, labels = ax.get_legend_handles_labels()
            if not legend:
                handles, labels = handles[-1:], labels[-1:]
            ax.legend(handles, labels, fontsize="x-small", loc="lower left", title="AP")
    return save(figure, path)
