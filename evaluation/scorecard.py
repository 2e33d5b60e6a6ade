"""A real-CT scorecard: DSC, NSD and the false-positive volume of every organ of every case.

DSC and NSD (1 mm) are FLARE's (evaluation.metrics). The false-positive volume says where a network calls an organ
in the wrong place, which DSC hides when the organ is absent (DSC 0 whether 1 or 100,000 voxels are called) or
large: it is the volume, in mL, of the voxels predicted as the organ that lie more than ``margin_mm`` (10 mm by
default) from every voxel of that organ in the reference, or of all predicted voxels when the reference holds none.
A boundary error of a few voxels therefore costs nothing here; a bladder called liver costs its whole volume.

    python -m evaluation.scorecard --gt GT_DIR --pred PRED_DIR [--out scorecard.csv] [--margin 10] [--anatomy DIR]

With ``--anatomy DIR`` (a folder of whole-anatomy label maps `<case>_*.nii.gz` on the cases' grids, their class names
in DIR/classes.json, as ../shared/data/templates holds them), the false positives of each organ are also attributed
to the anatomical structures they lie in ("stomach 2.5 mL, unlabelled 1.7 mL, ...").

GT_DIR holds `<case>.nii.gz` reference maps (images `<case>_0000.nii.gz` beside them are ignored), PRED_DIR the
predictions of the same names. Prints one row per case and organ; exit code 1 when a prediction is missing or
unreadable (scored as empty), 2 for usage errors.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation.evaluate import SUFFIX, find_cases
from evaluation.labels_io import GridMismatchError, LabelReadError, check_same_grid, read_labels
from evaluation.metrics import score_labels
from evaluation.task import ORGANS
from niftiio.command_line import UsageParser

DEFAULT_MARGIN_MM = 10.0


def false_positive_ml(
    gt: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float], margin_mm: float = DEFAULT_MARGIN_MM
) -> float:
    """Volume (mL, 1 mL = 1000 mm^3) of :func:`false_positive_mask`; 0.0 for an empty prediction."""
    voxel_ml = float(np.prod(np.asarray(spacing_zyx_mm, dtype=float))) / 1000.0
    return int(np.count_nonzero(false_positive_mask(gt, pred, spacing_zyx_mm, margin_mm))) * voxel_ml


def false_positive_mask(
    gt: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float], margin_mm: float = DEFAULT_MARGIN_MM
) -> np.ndarray:
    """The predicted voxels farther than ``margin_mm`` from every reference voxel.

    Args:
        gt, pred: boolean masks of one organ, same shape (z, y, x).
        spacing_zyx_mm: voxel spacing (z, y, x) in mm.
        margin_mm: distance (mm, >= 0) between voxel centres up to which a predicted voxel counts as near the
            reference. An empty reference makes every predicted voxel a false positive.
    Returns:
        a boolean mask of ``pred``'s shape.
    """
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"gt and pred must be 3D masks of one shape, got {gt.shape} and {pred.shape}")
    spacing = np.asarray(spacing_zyx_mm, dtype=float)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing_zyx_mm must be three positive numbers, got {spacing_zyx_mm}")
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    if not pred.any() or not gt.any():
        return pred.copy()
    # Only the reference's bounding box grown by the margin can hold a predicted voxel near the reference.
    reach = np.ceil(margin_mm / spacing).astype(int)
    where = np.nonzero(gt)
    box = tuple(
        slice(max(int(idx.min()) - r, 0), min(int(idx.max()) + r + 1, n)) for idx, r, n in zip(where, reach, gt.shape)
    )
    near_box = ndimage.distance_transform_edt(~gt[box], sampling=spacing) <= margin_mm
    far = pred.copy()
    far[box] &= ~near_box
    return far


@dataclass(frozen=True)
class OrganScore:
    """One case and organ: FLARE's DSC and NSD (1 mm), the false-positive volume (mL) and the reference's volume."""

    case: str
    organ: str
    dsc: float
    nsd: float
    fp_ml: float
    ref_ml: float
    status: str  # "ok", "absent" (in neither map) or "missing prediction"
    fp_where: str = ""  # the structures of a whole-anatomy map that hold the false positives, largest first


def where(mask: np.ndarray, anatomy: np.ndarray, names: dict[int, str], voxel_ml: float, top: int = 3) -> str:
    """The ``top`` structures of a whole-anatomy label map (same shape) that hold most of ``mask``, with their
    volumes in mL ("stomach 2.50 mL, unlabelled 1.70 mL"); class 0 is "unlabelled"; "" for an empty mask."""
    values, counts = np.unique(anatomy[mask], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    named = {0: "unlabelled", **names}
    return ", ".join(f"{named.get(int(values[i]), str(int(values[i])))} {counts[i] * voxel_ml:.2f} mL" for i in order)


def score_case(
    case: str,
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    margin_mm: float,
    anatomy: tuple[np.ndarray, dict[int, str]] | None = None,
) -> list[OrganScore]:
    """The scorecard rows of one case (uint8 label maps (z, y, x), spacing in mm), one per organ of ORGANS.

    ``anatomy``: a whole-anatomy label map of the same shape and its class names, to say where false positives lie.
    """
    scores = score_labels(gt, pred, spacing_zyx_mm)
    voxel_ml = float(np.prod(spacing_zyx_mm)) / 1000.0
    rows = []
    for label, organ in ORGANS.items():
        g, p = gt == label, pred == label
        absent = not g.any() and not p.any()
        dsc, nsd = scores[label]
        fp = false_positive_mask(g, p, spacing_zyx_mm, margin_mm)
        fp_where = where(fp, *anatomy, voxel_ml) if anatomy is not None and fp.any() else ""
        rows.append(
            OrganScore(
                case, organ, dsc, nsd, int(np.count_nonzero(fp)) * voxel_ml, int(np.count_nonzero(g)) * voxel_ml,
                "absent" if absent else "ok", fp_where,
            )
        )  # fmt: skip
    return rows


def read_anatomy(folder: Path, case: str, shape: tuple[int, ...]) -> tuple[np.ndarray, dict[int, str]] | None:
    """The whole-anatomy map `<case>_*.nii.gz` of ``folder`` and its class names (folder/classes.json, keyed by file
    name), when there is one on the case's grid (same array shape); None otherwise."""
    classes = folder / "classes.json"
    if not classes.is_file():
        return None
    names = json.loads(classes.read_text())
    for path in sorted(folder.glob(f"{case}_*{SUFFIX}")):
        if path.name in names:
            labels, _ = read_labels(path)
            if labels.shape == shape:
                return labels, {int(k): str(v) for k, v in names[path.name].items()}
    return None


def scorecard(
    gt_dir: Path, pred_dir: Path, margin_mm: float = DEFAULT_MARGIN_MM, anatomy_dir: Path | None = None
) -> tuple[list[OrganScore], list[str]]:
    """Rows for every reference case of ``gt_dir`` and the problems met (one line each, naming the file).

    A missing or unreadable prediction is scored as an empty map (DSC 0 where the organ is present) and listed.
    ``anatomy_dir``: whole-anatomy maps (see :func:`read_anatomy`) to say where the false positives lie.
    """
    rows: list[OrganScore] = []
    problems: list[str] = []
    for case in find_cases(gt_dir):
        gt, grid = read_labels(gt_dir / f"{case}{SUFFIX}")
        pred_path = pred_dir / f"{case}{SUFFIX}"
        try:
            pred, pred_grid = read_labels(pred_path)
            check_same_grid(grid, pred_grid, pred_path)
            status = None
        except (LabelReadError, GridMismatchError) as exc:
            problems.append(str(exc))
            pred, status = np.zeros_like(gt), "missing prediction"
        anatomy = read_anatomy(anatomy_dir, case, gt.shape) if anatomy_dir is not None else None
        case_rows = score_case(case, gt, pred, grid.spacing_zyx, margin_mm, anatomy)
        if status:
            case_rows = [replace(r, status=status) for r in case_rows]
        rows += case_rows
    return rows, problems


def format_table(rows: Sequence[OrganScore]) -> str:
    """A markdown table: one row per case, per organ 'DSC / NSD / FP mL' (absent organs shown as '-')."""
    cases = sorted({r.case for r in rows})
    organs = list(ORGANS.values())
    lines = [
        "| case | " + " | ".join(f"{o} DSC / NSD / FP mL" for o in organs) + " |",
        "|---" * (1 + len(organs)) + "|",
    ]
    by_key = {(r.case, r.organ): r for r in rows}
    for case in cases:
        cells = []
        for organ in organs:
            r = by_key[(case, organ)]
            if r.status == "absent":
                cells.append("-")
            elif r.ref_ml == 0:
                cells.append(f"not in scan / FP {r.fp_ml:.2f}")
            else:
                cells.append(f"{r.dsc:.3f} / {r.nsd:.3f} / {r.fp_ml:.2f}")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    located = [r for r in rows if r.fp_where]
    if located:
        lines += ["", "| case | organ | FP mL | where (whole-anatomy map) |", "|---|---|---|---|"]
        lines += [f"| {r.case} | {r.organ} | {r.fp_ml:.2f} | {r.fp_where} |" for r in located]
    return "\n".join(lines)


def write_csv(rows: Sequence[OrganScore], path: Path) -> None:
    """One CSV row per case and organ (columns: the OrganScore fields)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "organ", "dsc", "nsd", "fp_ml", "ref_ml", "status", "fp_where"])
        for r in rows:
            w.writerow(
                [r.case, r.organ, f"{r.dsc:.4f}", f"{r.nsd:.4f}", f"{r.fp_ml:.2f}", f"{r.ref_ml:.2f}", r.status,
                 r.fp_where]
            )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(prog="python -m evaluation.scorecard", description=__doc__.splitlines()[0])
    p.add_argument("--gt", type=Path, required=True, help="folder of reference <case>.nii.gz label maps")
    p.add_argument("--pred", type=Path, required=True, help="folder of predicted <case>.nii.gz label maps")
    p.add_argument("--out", type=Path, default=None, help="also write the rows to this CSV file (default: none)")
    p.add_argument(
        "--margin", type=float, default=DEFAULT_MARGIN_MM, help="false-positive distance in mm (default: %(default)s)"
    )
    p.add_argument(
        "--anatomy", type=Path, default=None,
        help="folder of whole-anatomy maps <case>_*.nii.gz and classes.json: say where false positives lie",
    )  # fmt: skip
    args = p.parse_args(argv)
    for folder in [args.gt, args.pred] + ([args.anatomy] if args.anatomy else []):
        if not folder.is_dir():
            p.error(f"{folder}: not a folder")
    if args.margin < 0:
        p.error(f"--margin must be >= 0, got {args.margin}")
    rows, problems = scorecard(args.gt, args.pred, args.margin, args.anatomy)
    if not rows:
        p.error(f"{args.gt}: no reference label maps (<case>{SUFFIX})")
    print(format_table(rows))
    if args.out:
        write_csv(rows, args.out)
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
