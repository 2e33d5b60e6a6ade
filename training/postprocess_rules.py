"""The post-processing rules side by side: each rule of inference.postprocess applied to the same raw predictions.

    python -m inference.predict -i IMAGES -o RAW --postprocess none    # the network's labels, once
    python -m training.postprocess_rules --raw RAW --gt LABELS [--margin 10]

Each rule runs on the canonical array (zyx, z towards the head), as predict runs it, and every result is scored
against the reference: per organ, the mean DSC over the cases whose reference holds the organ, and the false-positive
volume (evaluation.scorecard: predicted voxels more than ``--margin`` mm from the organ in the reference, all of them
when the reference has none) summed over the cases, in mL. Prints one markdown table; exit code 2 for usage errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from evaluation.evaluate import SUFFIX, find_cases
from evaluation.labels_io import Grid, read_labels
from evaluation.scorecard import DEFAULT_MARGIN_MM, OrganScore, score_case
from inference.ct_io import Orientation
from inference.postprocess import RULES, postprocess
from inference.task import ORGANS
from niftiio.command_line import UsageParser


def apply_rule(raw: np.ndarray, grid: Grid, rule: str) -> np.ndarray:
    """``rule`` on a (z, y, x) uint8 label map stored on ``grid``: run on its canonical array, returned in the
    stored axis order."""
    orient = Orientation.from_direction(grid.direction)
    return orient.from_canonical(postprocess(orient.to_canonical(raw), orient.spacing_zyx(grid.spacing_xyz), rule))


def compare_rules(raw_dir: Path, gt_dir: Path, margin_mm: float = DEFAULT_MARGIN_MM) -> dict[str, list[OrganScore]]:
    """{rule: scorecard rows of every case of ``gt_dir`` that ``raw_dir`` predicts}, for each of RULES."""
    rows: dict[str, list[OrganScore]] = {rule: [] for rule in RULES}
    for case in find_cases(gt_dir):
        pred_path = raw_dir / f"{case}{SUFFIX}"
        if not pred_path.is_file():
            continue
        raw, grid = read_labels(pred_path)
        gt, _ = read_labels(gt_dir / f"{case}{SUFFIX}")
        for rule in RULES:
            rows[rule] += score_case(case, gt, apply_rule(raw, grid, rule), grid.spacing_zyx, margin_mm)
    return rows


def format_comparison(rows: dict[str, list[OrganScore]]) -> str:
    """A markdown table: a row per rule, a cell per organ: mean DSC (cases holding it) / summed false positives."""
    organs = list(ORGANS.values())
    lines = ["| rule | " + " | ".join(organs) + " |", "| --- |" + " --- |" * len(organs)]
    for rule, scores in rows.items():
        cells = []
        for organ in organs:
            mine = [s for s in scores if s.organ == organ]
            held = [s.dsc for s in mine if s.ref_ml > 0]
            dsc = f"{np.mean(held):.3f}" if held else "-"
            cells.append(f"{dsc} / {sum(s.fp_ml for s in mine):.1f} mL")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = UsageParser(prog="python -m training.postprocess_rules", description=__doc__.splitlines()[0])
    p.add_argument(
        "--raw", type=Path, required=True, help="folder of <case>.nii.gz predictions made with --postprocess none"
    )
    p.add_argument("--gt", type=Path, required=True, help="folder of reference <case>.nii.gz label maps")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN_MM, help="false-positive distance, mm (default: 10)")
    args = p.parse_args(argv)
    for folder in (args.raw, args.gt):
        if not folder.is_dir():
            p.error(f"{folder}: not a folder")
    rows = compare_rules(args.raw, args.gt, args.margin)
    if not rows[RULES[0]]:
        p.error(f"{args.raw}: no prediction for any case of {args.gt}")
    print(format_comparison(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
