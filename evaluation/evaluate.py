"""Score predictions as the FLARE 2021 leaderboard does: DSC and NSD (1 mm) per case and organ.

    python -m evaluation.evaluate --gt GT_DIR --pred PRED_DIR --out OUT_DIR [--workers 4]

Pairs every ``<case>.nii.gz`` of GT_DIR (a ``<case>_0000.nii.gz`` beside a ``<case>.nii.gz`` is an image, skipped)
with PRED_DIR/``<case>.nii.gz``. Spacing comes from the ground truth's header. A prediction must lie on its ground
truth's grid (size equal; spacing, origin, direction within a tolerance): otherwise that case is an error,
listed, and the exit code is 1; nothing is ever resampled. A missing, empty (0-byte), truncated or otherwise
unreadable prediction scores 0 for every organ (as FLARE counts it), is listed, and makes the exit code 1 (every
NIfTI file is decoded in full first; a `<case>.nii` or other file beside a missing `<case>.nii.gz` is named in the
message). Labels outside 0-4 in a prediction or ground truth are scored as background, listed, and make the exit
code 1. An organ in neither file scores 1 (FLARE's rule) with status `absent`. Writes OUT_DIR/metrics.csv (case,
organ, DSC, NSD, status, in_gt), OUT_DIR/summary.csv (per organ and overall: n, mean, median, std as FLARE counts
them, and n and mean over the cases whose ground truth holds the organ), OUT_DIR/problems.csv, violin plots
OUT_DIR/violin_dsc.png and violin_nsd.png. Prints the problems first (stderr), then a table of every case and the
summary table (stdout). A progress bar on stderr when it is a terminal. Exit code 0 when every case was scored
without a problem, 1 when any was missing, unreadable or an error, 2 for usage errors.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from evaluation.labels_io import GridMismatchError, LabelReadError, check_same_grid, read_labels, unknown_labels
from evaluation.metrics import FLARE21_TOLERANCE_MM, labels_present, score_labels_present
from evaluation.report import (
    Row,
    format_cases,
    format_summary,
    summarize,
    violin_plots,
    write_metrics_csv,
    write_summary_csv,
)
from evaluation.task import IMAGE_SUFFIX, ORGANS
from niftiio.command_line import UsageParser
from niftiio.wording import count

SUFFIX = ".nii.gz"

# Statuses of a case: scored normally, scored 0 (the prediction is missing or unreadable), scored with labels outside
# the organs' counted as background (a problem: exit code 1), or not scored (an error).
OK, MISSING, UNREADABLE, WRONG_GRID, GT_ERROR = "ok", "missing", "unreadable", "wrong_grid", "gt_error"
UNKNOWN_LABELS = "unknown_labels"
# Status of an organ of a scored case that is in neither file (scored 1 and 1, as FLARE does).
ABSENT = "absent"
SCORED_ZERO = (MISSING, UNREADABLE)
ERRORS = (WRONG_GRID, GT_ERROR)


@dataclass
class CaseResult:
    """Scores of one case: {label: (DSC, NSD)} (None when the case could not be scored), status, message, and the
    labels found in the ground truth and in the prediction (None where that file could not be read)."""

    case: str
    status: str
    message: str = ""
    scores: dict[int, tuple[float, float]] | None = field(default=None)
    in_gt: set[int] | None = None
    in_pred: set[int] | None = None


def find_cases(gt_dir: Path) -> list[str]:
    """Case names of the label maps ``<case>.nii.gz`` in gt_dir, sorted.

    A file ``<c>_0000.nii.gz`` is the image of case ``<c>`` and skipped when ``<c>.nii.gz`` lies beside it (a
    flat folder of images and labels); otherwise it is the label map of a case that is itself named ``<c>_0000``
    (e.g. PHANTOM_0000 in a labelsTr folder).
    """
    names = {p.name for p in gt_dir.iterdir() if p.is_file() and p.name.endswith(SUFFIX)}
    return sorted(
        name[: -len(SUFFIX)]
        for name in names
        if not (name.endswith(IMAGE_SUFFIX) and name.removesuffix(IMAGE_SUFFIX) + SUFFIX in names)
    )


def score_case(
    case: str,
    gt_dir: Path,
    pred_dir: Path,
    labels: Sequence[int] = tuple(ORGANS),
    tolerance_mm: float | Mapping[int, float] = FLARE21_TOLERANCE_MM,
) -> CaseResult:
    """Score one case; never raises for bad files, which are reported in the result's status and message."""
    gt_path = gt_dir / f"{case}{SUFFIX}"
    try:
        gt, gt_grid = read_labels(gt_path)
    except LabelReadError as err:
        return CaseResult(case, GT_ERROR, f"ground truth {err}")
    zeros = dict.fromkeys(labels, (0.0, 0.0))
    pred_path = pred_dir / f"{case}{SUFFIX}"
    if not pred_path.exists():
        message = f"{pred_path}: missing prediction, scored 0{_misnamed_hint(case, pred_dir)}"
        return CaseResult(case, MISSING, message, zeros, in_gt=labels_present(gt, labels))
    try:
        pred, pred_grid = read_labels(pred_path)
    except LabelReadError as err:
        return CaseResult(case, UNREADABLE, f"{err}; scored 0", zeros, in_gt=labels_present(gt, labels))
    try:
        check_same_grid(gt_grid, pred_grid, pred_path)
    except GridMismatchError as err:
        return CaseResult(case, WRONG_GRID, str(err), in_gt=labels_present(gt, labels))
    scores, in_gt, in_pred = score_labels_present(gt, pred, gt_grid.spacing_zyx, labels, tolerance_mm)
    notes = [_unknown_note("ground truth ", gt_path, gt, labels), _unknown_note("", pred_path, pred, labels)]
    notes = [n for n in notes if n]
    status = UNKNOWN_LABELS if notes else OK
    return CaseResult(case, status, "; ".join(notes), scores, in_gt, in_pred)


def _misnamed_hint(case: str, pred_dir: Path) -> str:
    """For a missing prediction: a clause naming the files beside it that look like it under another extension
    (``<case>.nii``, ``<case>.mha``), or '' when there are none."""
    try:
        near = sorted(p.name for p in pred_dir.iterdir() if p.name.startswith(f"{case}.") and p.name != case + SUFFIX)
    except OSError:
        return ""
    if not near:
        return ""
    return f" ({', '.join(near)} lies beside it: predictions are read only as <case>{SUFFIX})"


def folder_problem(path: Path, option: str) -> str | None:
    """Why ``path`` cannot be the folder that ``option`` names, in one clause; None when it is a folder."""
    if path.is_dir():
        return None
    if path.exists():
        return f"{option} {path} is a file, not a folder"
    return f"{option} {path}: folder not found"


def _unknown_note(who: str, path: Path, array, labels: Sequence[int]) -> str:
    """One clause naming the labels of a label map that are neither background nor an organ scored ('' if none)."""
    extra = unknown_labels(array, (0, *labels))
    if not extra:
        return ""
    known = sorted({0, *labels})
    known_text = f"{known[0]}-{known[-1]}" if known == list(range(known[0], known[-1] + 1)) else str(known)[1:-1]
    found = ", ".join(f"{v} ({n:,} voxels)" for v, n in extra.items())
    return f"{who}{path}: labels {found} are not among {known_text}; scored as background"


def parse_tolerance(text: str) -> float | dict[int, float]:
    """``"1"`` -> 1.0 for every organ; ``"liver=5,kidney=3,spleen=3,pancreas=5"`` -> {label: mm}."""
    if "=" not in text:
        return float(text)
    by_name = {name: label for label, name in ORGANS.items()}
    out: dict[int, float] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in by_name:
            raise ValueError(f"unknown organ {name.strip()!r} in --tolerance (known: {', '.join(by_name)})")
        out[by_name[name.strip()]] = float(value)
    return out


def rows_of(results: Sequence[CaseResult], labels: Sequence[int]) -> list[Row]:
    """One row per case and label: the case's status, or ``absent`` for a label in neither file of a scored case."""
    rows = []
    for res in results:
        for label in labels:
            dsc, nsd = res.scores[label] if res.scores is not None else (math.nan, math.nan)
            in_gt = None if res.in_gt is None else label in res.in_gt
            status = res.status
            if status == OK and not in_gt and res.in_pred is not None and label not in res.in_pred:
                status = ABSENT
            rows.append(Row(res.case, ORGANS.get(label, str(label)), dsc, nsd, status, in_gt))
    return rows


def evaluate(
    gt_dir: Path,
    pred_dir: Path,
    out_dir: Path,
    workers: int = 1,
    tolerance_mm: float | Mapping[int, float] = FLARE21_TOLERANCE_MM,
    labels: Sequence[int] = tuple(ORGANS),
    progress: bool = True,
) -> list[CaseResult]:
    """Score every case of gt_dir, write the CSVs and plots to out_dir, and return the per-case results."""
    for folder, option in ((gt_dir, "--gt"), (pred_dir, "--pred")):
        problem = folder_problem(folder, option)
        if problem:
            raise FileNotFoundError(problem)
    cases = find_cases(gt_dir)
    if not cases:
        raise FileNotFoundError(f"--gt {gt_dir}: no <case>.nii.gz label maps found")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"{out_dir}: cannot create the output folder ({err.strerror or err})") from None

    # on a terminal only (disable=None): off a terminal the log holds no bar
    bar = tqdm(total=len(cases), desc="scoring", unit="case", disable=None if progress else True, file=sys.stderr)
    by_case: dict[str, CaseResult] = {}
    if workers <= 1:
        for case in cases:
            by_case[case] = score_case(case, gt_dir, pred_dir, labels, tolerance_mm)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(score_case, c, gt_dir, pred_dir, labels, tolerance_mm): c for c in cases}
            for fut in as_completed(futures):
                by_case[futures[fut]] = fut.result()
                bar.update()
    bar.close()
    results = [by_case[c] for c in cases]

    rows = rows_of(results, labels)
    organs = [ORGANS.get(v, str(v)) for v in labels]
    write_metrics_csv(rows, out_dir / "metrics.csv")
    summary = summarize(rows, organs)
    write_summary_csv(summary, out_dir / "summary.csv")
    with open(out_dir / "problems.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["case", "status", "message"])
        for res in results:
            if res.status != OK:
                writer.writerow([res.case, res.status, res.message])
    if isinstance(tolerance_mm, Mapping):
        note = "tolerance " + ", ".join(f"{ORGANS.get(v, v)} {tolerance_mm[v]:g}" for v in labels) + " mm"
    else:
        note = f"tolerance {float(tolerance_mm):g} mm"
    violin_plots(rows, organs, out_dir, note)
    extra = sorted(p.name for p in pred_dir.glob(f"*{SUFFIX}") if p.name[: -len(SUFFIX)] not in by_case)
    if extra:
        print(
            f"note: {count(len(extra), 'prediction')} without ground truth ignored: {', '.join(extra)}",
            file=sys.stderr,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(prog="python -m evaluation.evaluate", description=__doc__)
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth <case>.nii.gz")
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted <case>.nii.gz")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--workers", type=int, default=1, help="cases scored in parallel processes")
    parser.add_argument(
        "--tolerance",
        default=str(FLARE21_TOLERANCE_MM),
        help="NSD tolerance in mm: one number or per organ, e.g. liver=5,kidney=3,spleen=3,pancreas=5 (FLARE22) "
        "(default: 1.0, FLARE21's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    try:
        tolerance = parse_tolerance(args.tolerance)
    except ValueError as err:
        parser.error(f"--tolerance {args.tolerance}: {err}")
    labels = tuple(ORGANS)
    if isinstance(tolerance, dict) and set(tolerance) != set(labels):
        parser.error("--tolerance per organ must name all of " + ", ".join(ORGANS.values()))
    try:
        results = evaluate(args.gt, args.pred, args.out, args.workers, tolerance, labels, not args.no_progress)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    problems = [r for r in results if r.status != OK]
    for res in problems:  # before the tables, so that they are read first
        kind = "error" if res.status in (*ERRORS, UNKNOWN_LABELS) else "warning"
        print(f"{kind}: {res.case}: {res.message}", file=sys.stderr)
    sys.stderr.flush()
    organs = [ORGANS[v] for v in labels]
    rows = rows_of(results, labels)
    print(format_cases(rows, organs))
    print()
    print(format_summary(summarize(rows, organs)))
    n_err = sum(r.status in ERRORS for r in problems)
    n_zero = sum(r.status in SCORED_ZERO for r in problems)
    n_unknown = sum(r.status == UNKNOWN_LABELS for r in problems)
    unknown = f", {n_unknown} scored with labels outside 0-4 (as background)" if n_unknown else ""
    print(
        f"{count(len(results), 'case')}: {len(results) - len(problems)} scored, {n_zero} scored 0 "
        f"(missing or unreadable){unknown}, {n_err} not scored (errors), {time.perf_counter() - started:.1f} s. "
        f"Results in {args.out}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
