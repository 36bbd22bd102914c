"""Matplotlib figures without pyplot's global state (safe in trainers and worker threads).
Matplotlib is imported by the first figure, not with this module: ``import rtinst`` stays light."""
DPI = 100


def new_figure(width, height):
    """A figure ``width`` x ``height`` inches, drawn by the Agg back end when saved."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(figure, path):
    figure.savefig(path)
    return path


def subplot_grid(count, columns=3, size=(4.0, 3.0)):
    """A figure with ``count`` axes on a grid of ``columns`` (the unused ones hidden)."""
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    figure = new_figure(size[0] * columns, size[1] * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, list(axes[:count])
