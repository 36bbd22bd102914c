"""``curves.png``: every loss, the learning rate, every AP and the video evaluation's tracking
metrics over the iterations of one run, or of several runs overlaid (comparison page)."""
from .figures import save, subplot_grid
from .training_log import ITERATION, columns, is_evaluation_key, series, split_evaluation_key

# AP of each task; the video evaluation's identity metrics (IDSW a count, the others percent)
CURVE_METRICS = ("AP", "AP50", "AP75", "IDF1", "HOTA", "MOTA", "IDSW")


def curve_keys(rows):
    """The keys worth a curve: losses, the learning rate and the ``CURVE_METRICS`` of each
    evaluated dataset and task."""
    keys = columns(rows)
    losses = [k for k in keys if "loss" in k]
    evaluated = [k for k in keys if is_evaluation_key(k) and k.rsplit("/", 1)[1] in CURVE_METRICS]
    return [*losses, *(["lr"] if "lr" in keys else []), *evaluated]


def curves_figure(runs, dataset=None):
    """The figure of ``plot_curves``, or None when no run logged anything to draw."""
    panels = {}  # title: {key: the dataset of its results (None for losses, lr)}
    for rows in runs.values():
        for key in curve_keys(rows):
            name, metric = split_evaluation_key(key) if is_evaluation_key(key) else (None, key)
            panels.setdefault(metric, {})[key] = name or (dataset if name == "" else None)
    if not panels:
        return None
    figure, axes = subplot_grid(len(panels))
    for ax, (title, keys) in zip(axes, panels.items()):
        for name, rows in runs.items():
            for key, key_dataset in keys.items():
                x, y = series(rows, key)
                label = ": ".join(p for p in (name if len(runs) > 1 else "", key_dataset) if p)
                if x:
                    ax.plot(x, y, marker="o" if len(x) < 3 else None, markersize=4,
                            label=label or name)
        ax.set_title(title)
        ax.set_xlabel(ITERATION)
        ax.grid(alpha=0.3)
        if title == "lr" or "loss" in title:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        elif any(keys.values()) and ax.lines:
            ax.legend(fontsize="small")
    if len(runs) > 1:
        axes[0].legend(fontsize="small")
    return figure


def plot_curves(runs, path, dataset=None):
    """One panel per loss, the learning rate and each evaluated metric (``segm/AP``,
    ``tracking/IDF1``), a line per run and, on a metric's panel, per dataset, labelled with its
    name (``dataset``: the one whose results are logged without a name, ``segm/AP``, when
    known): ``runs`` is {name: rows}. A key logged once (a single evaluation) is drawn as a
    point. Returns ``path``, or None when no run logged anything to draw."""
    figure = curves_figure(runs, dataset)
    return save(figure, path) if figure is not None else None
