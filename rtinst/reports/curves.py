"""``curves.png``: every loss, the learning rate and every AP over the iterations of one run, or
of several runs overlaid (comparison page)."""
from .figures import save, subplot_grid
from .training_log import ITERATION, columns, is_evaluation_key, series

AP_METRICS = ("AP", "AP50", "AP75")


def curve_keys(rows):
    """The keys worth a panel: losses, the learning rate and the AP / AP50 / AP75 of each
    evaluated task."""
    keys = columns(rows)
    losses = [k for k in keys if "loss" in k]
    evaluated = [k for k in keys if is_evaluation_key(k) and k.rsplit("/", 1)[1] in AP_METRICS]
    return [*losses, *(["lr"] if "lr" in keys else []), *evaluated]


def plot_curves(runs, path):
    """One panel per key of ``curve_keys``, a line per run: ``runs`` is {name: rows}. A key
    logged once (a single evaluation) is drawn as a point. Returns ``path``, or None when no run
    logged anything to draw."""
    keys = list(dict.fromkeys(k for rows in runs.values() for k in curve_keys(rows)))
    if not keys:
        return None
    figure, axes = subplot_grid(len(keys))
    for ax, key in zip(axes, keys):
        for name, rows in runs.items():
            x, y = series(rows, key)
            if x:
                ax.plot(x, y, marker="o" if len(x) < 3 else None, markersize=4, label=name)
        ax.set_title(key)
        ax.set_xlabel(ITERATION)
        ax.grid(alpha=0.3)
        if key == "lr" or "loss" in key:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if len(runs) > 1:
        axes[0].legend(fontsize="small")
    return save(figure, path)
