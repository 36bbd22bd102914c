"""The benchmark's picture: median latency against the number of detections per image, a line
per model (baselines dashed), bars from the 10th to the 90th percentile."""
from collections import defaultdict

import numpy as np

from rtinst.reports.figures import new_figure, save


def latency_series(report):
    """{label: (baseline, [(detections, median ms, p10 ms, p90 ms)])} sorted by detections; the
    detections are the fixed count K, or the mean achieved where the model kept its own
    thresholds."""
    series = defaultdict(lambda: [False, []])
    for row in report["models"]:
        k = row["num_detections"] if row["num_detections"] is not None else row["detections_mean"]
        times = np.asarray(row.get("times_ms") or [row["median_ms"]])
        series[row["label"]][0] = row["baseline"]
        series[row["label"]][1].append((k, row["median_ms"], float(np.percentile(times, 10)),
                                        float(np.percentile(times, 90))))
    return {label: (baseline, sorted(points)) for label, (baseline, points) in series.items()}


def plot_latency(report, path):
    """Draws ``report`` (``run_benchmark``'s) into ``path``."""
    env = report["environment"]
    figure = new_figure(7.0, 4.5)
    ax = figure.add_subplot()
    for label, (baseline, points) in latency_series(report).items():
        k, median, low, high = (np.array(v, float) for v in zip(*points))
        ax.errorbar(k, median, yerr=[median - low, high - median], fmt="o--" if baseline else "o-",
                    capsize=3, label=label + " (baseline)" * baseline)
    ax.set_xlabel("detections per image")
    ax.set_ylabel("latency per image (ms: median, p10-p90)")
    ax.set_title(f"{env['device_name']}, {env['threads']} threads, "
                 f"input {report['settings']['input_size']}", fontsize="medium")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save(figure, path)
