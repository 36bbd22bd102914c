"""``per_class.csv`` and ``per_class.png``: box and mask AP / AP50 per class, with the number
of ground-truth instances."""
import csv

import numpy as np

from .figures import new_figure, save


def per_class_rows(arrays, instance_counts):
    """One row per class: {"class", "instances", "<task> AP", "<task> AP50", ...} for each task
    in ``arrays`` ({task: PrecisionArray})."""
    names = next(iter(arrays.values())).class_names if arrays else list(instance_counts)
    rows = []
    for k, name in enumerate(names):
        row = {"class": name, "instances": instance_counts.get(name, 0)}
        for task, array in arrays.items():
            row[f"{task} AP"] = array.average_precision("0.5:0.95", k)
            row[f"{task} AP50"] = array.average_precision("0.5", k)
        rows.append(row)
    return rows


def write_per_class_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["class", "instances"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_per_class(path, rows, tasks):
    """Horizontal bars: AP per class, one bar per task (box, mask), best class first."""
    metric = [f"{task} AP" for task in tasks]
    rows = sorted(rows, key=lambda r: -np.nan_to_num(r.get(metric[0], 0.0), nan=-1.0))
    figure = new_figure(7.0, 1.2 + 0.32 * max(len(rows), 1) * max(len(tasks), 1) ** 0.5)
    ax = figure.add_subplot()
    height = 0.8 / max(len(tasks), 1)
    positions = np.arange(len(rows))
    for i, (task, key) in enumerate(zip(tasks, metric)):
        values = np.nan_to_num([r[key] for r in rows], nan=0.0)
        ax.barh(positions + (i - (len(tasks) - 1) / 2) * height, values, height,
                label={"bbox": "box AP", "segm": "mask AP"}.get(task, key))
    ax.set_yticks(positions, [f"{r['class']} ({r['instances']})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("AP (IoU 0.5:0.95)")
    ax.set_xlim(0, 100)
    ax.set_title("AP per class (ground-truth instances)")
    ax.grid(axis="x", alpha=0.3)
    if tasks:
        ax.legend(loc="lower right", fontsize="small")
    return save(figure, path)
