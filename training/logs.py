"""Training logs: a per-epoch CSV, a per-step CSV, and a plot of the curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from inference.task import ORGANS


def append_row(path: Path, row: dict) -> None:
    """Append a row to a CSV, writing the header first when the file is new (columns: the first row's keys)."""
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_rows(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def truncate_rows(path: Path, keep) -> None:
    """Keep only the rows for which keep(row) is true (after a resume, drop rows of epochs that are redone)."""
    rows = read_rows(path)
    if not rows:
        return
    Path(path).unlink()
    for row in rows:
        if keep(row):
            append_row(path, row)


def plot_curves(epoch_csv: Path, png: Path) -> None:
    """Write :func:`curves_figure` of a log.csv to a PNG (nothing when the log is empty)."""
    fig = curves_figure(read_rows(epoch_csv))
    if fig is None:
        return
    import matplotlib.pyplot as plt

    fig.savefig(png, dpi=100)
    plt.close(fig)


def curves_figure(rows: list[dict]):
    """Loss, lambda and validation DSC/NSD per organ against the epoch, in one matplotlib figure (None: no rows).

    The x axis counts epochs as the training log prints them (1 after the first epoch; log.csv's ``epoch`` column
    is 0-based), with ticks on whole epochs only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not rows:
        return None

    def col(name: str) -> tuple[list[int], list[float]]:
        pts = [(int(r["epoch"]) + 1, float(r[name])) for r in rows if r.get(name) not in (None, "", "nan")]
        pts = [(e, v) for e, v in pts if not math.isnan(v)]
        return [e for e, _ in pts], [v for _, v in pts]

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    axes[0].plot(*col("loss"), label="loss")
    axes[0].plot(*col("ce"), label="cross-entropy")
    axes[0].plot(*col("dice"), label="soft Dice loss")
    axes[0].set_yscale("log")
    axes[1].plot(*col("lam"), label="lambda")
    for organ in ORGANS.values():
        axes[2].plot(*col(f"dsc_{organ}"), marker=".", label=organ)
        axes[3].plot(*col(f"nsd_{organ}"), marker=".", label=organ)
    for ax, title in zip(axes, ("training loss", "lambda", "validation DSC", "validation NSD (1 mm)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
