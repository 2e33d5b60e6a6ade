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
    """One case and organ: DSC and NSD in [0, 1] (NaN where the case could not be scored), a status, and whether
    the ground truth holds the organ (None when the ground truth could not be read)."""

    case: str
    organ: str
    dsc: float
    nsd: float
    status: str = "ok"
    in_gt: bool | None = None


def write_metrics_csv(rows: Iterable[Row], path: Path) -> None:
    """metrics.csv: one row per case and organ (case, organ, DSC, NSD, status, in_gt); unscored values empty;
    in_gt is 1 when the ground truth holds the organ, 0 when not, empty when unknown."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "organ", "DSC", "NSD", "status", "in_gt"])
        for r in rows:
            in_gt = "" if r.in_gt is None else int(r.in_gt)
            writer.writerow([r.case, r.organ, _fmt_csv(r.dsc), _fmt_csv(r.nsd), r.status, in_gt])


def _fmt_csv(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def summarize(rows: Sequence[Row], organs: Sequence[str]) -> list[dict[str, float | str | int]]:
    """Per organ and overall: FLARE's n, mean, median and sample standard deviation (ddof=1) of DSC and NSD, and
    the count and mean over the cases whose ground truth holds the organ (``n_with_organ``, ``DSC_mean_with_organ``,
    ``NSD_mean_with_organ``).

    "overall" pools every scored (case, organ) pair. Rows whose values are NaN (cases that could not be
    scored, e.g. a prediction on the wrong grid) are left out and not counted in n. FLARE's mean counts an organ
    in neither file as 1; the mean with the organ leaves out every row whose ground truth lacks it (those, and
    predictions of an organ that the ground truth does not hold, which FLARE scores 0).
    """
    groups = [(organ, [r for r in rows if r.organ == organ]) for organ in organs]
    groups.append(("overall", list(rows)))
    out: list[dict[str, float | str | int]] = []
    for name, members in groups:
        entry: dict[str, float | str | int] = {"organ": name}
        for metric in METRICS:
            values = _values(members, metric)
            entry["n"] = int(values.size)
            entry[f"{metric}_mean"] = float(np.mean(values)) if values.size else math.nan
            entry[f"{metric}_median"] = float(np.median(values)) if values.size else math.nan
            entry[f"{metric}_std"] = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
        held = [r for r in members if r.in_gt]
        for metric in METRICS:
            values = _values(held, metric)
            entry["n_with_organ"] = int(values.size)
            entry[f"{metric}_mean_with_organ"] = float(np.mean(values)) if values.size else math.nan
        out.append(entry)
    return out


def _values(rows: Sequence[Row], metric: str) -> np.ndarray:
    """The rows' DSC or NSD values, NaN (unscored) left out, as float64."""
    values = np.array([r.dsc if metric == "DSC" else r.nsd for r in rows], dtype=np.float64)
    return values[~np.isnan(values)]


SUMMARY_COLUMNS = (
    "organ",
    "n",
    *(f"{m}_{s}" for m in METRICS for s in ("mean", "median", "std")),
    "n_with_organ",
    *(f"{m}_mean_with_organ" for m in METRICS),
)


def write_summary_csv(summary: Sequence[dict[str, float | str | int]], path: Path) -> None:
    """summary.csv: one row per organ and overall; a value that does not exist (the standard deviation of one
    case, a mean over no case) is an empty cell."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUMMARY_COLUMNS)
        for entry in summary:
            writer.writerow([_fmt_csv(entry[c]) if isinstance(entry[c], float) else entry[c] for c in SUMMARY_COLUMNS])


def format_summary(summary: Sequence[dict[str, float | str | int]]) -> str:
    """A fixed-width text table of the summary (4 decimals): FLARE's columns over every scored case, then the count
    and means over the cases whose ground truth holds the organ, and a line saying what each part counts. A value
    that does not exist (the standard deviation of one case, a mean over no case) shows ``-``."""
    flare = [f"{m}_{s}" for m in METRICS for s in ("mean", "median", "std")]
    held = [f"{m}_mean_with_organ" for m in METRICS]
    header = (
        f"{'organ':<10} {'n':>3} "
        + "".join(f"{k.replace('_', ' ').replace('median', 'med'):>10}" for k in flare)
        + f" | {'n':>3} "
        + "".join(f"{m + ' mean':>10}" for m in METRICS)
    )
    lines = [
        f"{'':<15}{'FLARE means: every case, an organ in neither file scores 1':<60} | "
        "means over the cases whose ground truth holds it",
        header,
        "-" * len(header),
    ]
    for entry in summary:
        lines.append(
            f"{entry['organ']!s:<10} {entry['n']:>3} "
            + "".join(f"{_fmt_table(float(entry[k])):>10}" for k in flare)
            + f" | {entry['n_with_organ']:>3} "
            + "".join(f"{_fmt_table(float(entry[k])):>10}" for k in held)
        )
    return "\n".join(lines)


def _fmt_table(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"


CASE_TABLE_NOTE = "n/a: the organ is in neither file (FLARE scores it 1); -: not scored"


def format_cases(rows: Sequence[Row], organs: Sequence[str]) -> str:
    """A fixed-width text table with one line per case: DSC and NSD of each organ (3 decimals) and the case's status.

    An organ in neither file (status ``absent``, which FLARE scores 1) shows ``n/a``; a case that could not be
    scored (NaN) shows ``-``. A last line says so.
    """
    cases = list(dict.fromkeys(r.case for r in rows))
    by_key = {(r.case, r.organ): r for r in rows}
    width = max([len("case"), *(len(c) for c in cases)])
    header = f"{'case':<{width}}" + "".join(f" {o + ' DSC':>13} {'NSD':>5}" for o in organs) + "  status"
    lines = [header, "-" * len(header)]
    for case in cases:
        cells, statuses = [], []
        for organ in organs:
            row = by_key.get((case, organ))
            if row is None:
                cells.append(f" {'-':>13} {'-':>5}")
                continue
            statuses.append(row.status)
            cells.append(f" {_cell(row, row.dsc):>13} {_cell(row, row.nsd):>5}")
        status = next((s for s in statuses if s not in ("ok", "absent")), "ok")
        lines.append(f"{case:<{width}}" + "".join(cells) + f"  {status}")
    lines.append(CASE_TABLE_NOTE)
    return "\n".join(lines)


def _cell(row: Row, value: float) -> str:
    if row.status == "absent":
        return "n/a"
    return "-" if math.isnan(value) else f"{value:.3f}"


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
