"""Tables and plots of per-case scores: metrics.csv, summary.csv, a printed summary, violin plots."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METRICS = ("DSC", "NSD")


@dataclass(frozen=True)
class Row:
    """One case and organ: DSC and NSD in [0, 1] (NaN where the case could not be scored), and a status."""

    case: str
    organ: str
    dsc: float
    nsd: float
    status: str = "ok"


def write_metrics_csv(rows: Iterable[Row], path: Path) -> None:
    """metrics.csv: one row per case and organ (case, organ, DSC, NSD, status); unscored values empty."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "organ", "DSC", "NSD", "status"])
        for r in rows:
            writer.writerow([r.case, r.organ, _fmt_csv(r.dsc), _fmt_csv(r.nsd), r.status])


def _fmt_csv(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def summarize(rows: Sequence[Row], organs: Sequence[str]) -> list[dict[str, float | str | int]]:
    """Mean, median and sample standard deviation (ddof=1) of DSC and NSD per organ and overall.

    "overall" pools every scored (case, organ) pair. Rows whose values are NaN (cases that could not be
    scored, e.g. a prediction on the wrong grid) are left out and not counted in n.
    """
    groups = [(organ, [r for r in rows if r.organ == organ]) for organ in organs]
    groups.append(("overall", list(rows)))
    out: list[dict[str, float | str | int]] = []
    for name, members in groups:
        entry: dict[str, float | str | int] = {"organ": name}
        for metric in METRICS:
            values = np.array([r.dsc if metric == "DSC" else r.nsd for r in members], dtype=np.float64)
            values = values[~np.isnan(values)]
            entry["n"] = int(values.size)
            entry[f"{metric}_mean"] = float(np.mean(values)) if values.size else math.nan
            entry[f"{metric}_median"] = float(np.median(values)) if values.size else math.nan
            entry[f"{metric}_std"] = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
        out.append(entry)
    return out


SUMMARY_COLUMNS = ("organ", "n", *(f"{m}_{s}" for m in METRICS for s in ("mean", "median", "std")))


def write_summary_csv(summary: Sequence[dict[str, float | str | int]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUMMARY_COLUMNS)
        for entry in summary:
            writer.writerow([entry[c] if not isinstance(entry[c], float) else repr(entry[c]) for c in SUMMARY_COLUMNS])


def format_summary(summary: Sequence[dict[str, float | str | int]]) -> str:
    """A fixed-width text table of the summary (4 decimals)."""
    header = f"{'organ':<10} {'n':>4}  " + "  ".join(
        f"{m + ' ' + s:>11}" for m in METRICS for s in ("mean", "median", "std")
    )
    lines = [header, "-" * len(header)]
    for entry in summary:
        values = "  ".join(f"{float(entry[f'{m}_{s}']):>11.4f}" for m in METRICS for s in ("mean", "median", "std"))
        lines.append(f"{entry['organ']!s:<10} {entry['n']:>4}  {values}")
    return "\n".join(lines)


def violin_plots(rows: Sequence[Row], organs: Sequence[str], out_dir: Path, nsd_note: str = "") -> list[Path]:
    """One PNG per metric (violin_dsc.png, violin_nsd.png): a violin of the per-case values of each organ.

    ``nsd_note`` (e.g. "tolerance 1 mm") is added to the NSD plot's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric in METRICS:
        data, labels = [], []
        for organ in organs:
            values = [r.dsc if metric == "DSC" else r.nsd for r in rows if r.organ == organ]
            values = [v for v in values if not math.isnan(v)]
            if values:
                data.append(values)
                labels.append(f"{organ}\n(n={len(values)})")
        fig, ax = plt.subplots(figsize=(1.8 * max(2, len(data)) + 1, 4), dpi=120)
        if data:
            positions = list(range(1, len(data) + 1))
            # A violin needs spread: constant series are drawn as points only.
            spread = [i for i, d in enumerate(data) if np.ptp(d) > 0]
            if spread:
                ax.violinplot([data[i] for i in spread], positions=[positions[i] for i in spread], showmedians=True)
            for pos, values in zip(positions, data, strict=True):
                ax.scatter(np.full(len(values), pos), values, s=10, color="black", alpha=0.6, zorder=3)
            ax.set_xticks(positions, labels)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(metric)
        note = f" ({nsd_note})" if metric == "NSD" and nsd_note else ""
        ax.set_title(f"{metric} per organ{note}")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"violin_{metric.lower()}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths
