"""The comparison page of several finished runs: a table of box / mask AP and latency per run,
their curves overlaid, a speed / accuracy scatter plot, and each run's per-class, PR,
confusion-matrix and gallery pictures side by side."""
from pathlib import Path

from .curves import plot_curves
from .figures import new_figure, save
from .html_page import Page, escape, number, table
from .run_report import REPORT_FILE
from .training_log import (
    RESULTS_FILE,
    final_evaluation,
    read_metrics,
    read_results_csv,
    results_rows,
)

RUN_PICTURES = (
    ("per_class.png", "AP per class"),
    ("pr_curves_bbox.png", "box precision-recall"),
    ("pr_curves_segm.png", "mask precision-recall"),
    ("confusion_matrix.png", "confusion matrix"),
    ("gallery.jpg", "ground truth (left) and predictions (right)"),
)
TABLE_METRICS = (("bbox", "AP"), ("bbox", "AP50"), ("segm", "AP"), ("segm", "AP50"),
                 ("segm", "AP75"))


def run_rows(folder):
    """A run's rows: from its ``metrics.json`` (the log itself, also of runs made before
    ``results.csv`` existed), else from its ``results.csv`` (an ``--eval-only`` folder); a
    ``FileNotFoundError`` naming the folder when it has neither."""
    folder = Path(folder)
    if (folder / "metrics.json").is_file():
        return results_rows(read_metrics(folder / "metrics.json"))
    if (folder / RESULTS_FILE).is_file():
        return read_results_csv(folder / RESULTS_FILE)
    raise FileNotFoundError(f"{folder}: no {RESULTS_FILE} or metrics.json (not a finished run)")


def accuracy_key(evaluations):
    """The AP that every run has: "segm/AP" (mask AP) when all have one, else "bbox/AP"."""
    return "segm/AP" if all("segm/AP" in e for e in evaluations) else "bbox/AP"


def plot_speed_accuracy(path, points, key):
    """One labelled point per run: latency (ms) against its ``key`` AP; ``points`` is
    [(name, ms, AP)]."""
    figure = new_figure(6.5, 4.5)
    ax = figure.add_subplot()
    for name, ms, ap in points:
        ax.scatter([ms], [ap], s=40)
        ax.annotate(name, (ms, ap), textcoords="offset points", xytext=(5, 5), fontsize="small")
    ax.set_xlabel("latency (ms per image, median)")
    ax.set_ylabel({"segm/AP": "mask AP", "bbox/AP": "box AP"}[key])
    ax.set_title("speed / accuracy (up and left is better)")
    ax.grid(alpha=0.3)
    ax.margins(0.25)
    return save(figure, path)


def write_comparison(runs, output_dir, latency_ms=None, note=""):
    """Writes ``report.html``, ``curves.png`` and (with latencies) ``speed_accuracy.png`` (mask
    AP where every run has one, else box AP) into ``output_dir``; ``runs`` is {name: run
    folder}, ``latency_ms`` {name: ms} for the runs that were benchmarked. Returns
    {name: path}."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    latency_ms = latency_ms or {}
    rows = {name: run_rows(folder) for name, folder in runs.items()}
    evaluations = {name: final_evaluation(r) for name, r in rows.items()}
    files = {}
    curves = plot_curves(rows, output / "curves.png")
    if curves:
        files["curves"] = curves
    key = accuracy_key(evaluations.values())
    points = [(name, latency_ms[name], evaluations[name][key])
              for name in runs if name in latency_ms and key in evaluations[name]]
    if points:
        files["speed_accuracy"] = plot_speed_accuracy(output / "speed_accuracy.png", points, key)

    page = Page(output, f"rtinst comparison of {len(runs)} runs")
    if note:
        page.paragraph(note)
    header = ["run", *(f"{'box' if t == 'bbox' else 'mask'} {m}" for t, m in TABLE_METRICS),
              "latency ms", "report"]
    table_rows = []
    for name, folder in runs.items():
        evaluation = evaluations[name]
        report = page.link_tag(Path(folder) / REPORT_FILE, "report")
        table_rows.append([escape(name),
                           *(number(evaluation.get(f"{t}/{m}")) for t, m in TABLE_METRICS),
                           number(latency_ms.get(name)), report or "–"])
    page.heading("Results")
    page.raw(table(header, table_rows))
    for key, title in (("curves", "Losses, learning rate and AP over the iterations"),
                       ("speed_accuracy", "Speed and accuracy")):
        if key in files:
            page.heading(title)
            page.image(files[key], key)
    page.heading("Side by side")
    for picture, title in RUN_PICTURES:
        tags = [(name, page.image_tag(Path(folder) / picture, f"{name} {picture}"))
                for name, folder in runs.items()]
        if any(tag for _, tag in tags):
            page.heading(title, level=3)
            page.raw("<div class='side'>" + "".join(
                f"<div><b>{escape(name)}</b><br>{tag or '(none)'}</div>" for name, tag in tags)
                + "</div>")
    files["report"] = page.write(REPORT_FILE)
    return files
