"""Benchmark our NSD against the reference package (DeepMind's surface-distance) on the same masks, in one run.

Rows: each organ of a real case (ground truth against a perturbed copy of itself) and liver-sized synthetic
masks on a 200x512x512 grid, plus a whole synthetic case of four organs through ``score_labels``. Prints a
markdown table (our seconds, the reference's seconds, their ratio, and the largest difference of the values)
and writes it to bench/results/nsd.md.

    python bench/bench_nsd.py                # full size (about a minute on 2 cores)
    python bench/bench_nsd.py --quick        # tiny sizes, for the smoke test
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import nsd, score_labels  # noqa: E402
from evaluation.task import ORGANS  # noqa: E402
from inference.task import shared_data_dir  # noqa: E402
from niftiio.command_line import UsageParser  # noqa: E402


def _best_time(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Best wall time in seconds over ``repeats`` calls, and the value of the last call."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def _reference_nsd(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...], tol: float) -> float:
    import surface_distance

    # The organizers' edge cases; the reference itself fails on NumPy 2 when one mask is empty (np.Inf).
    if not gt.any() or not pred.any():
        return float(not gt.any() and not pred.any())
    dists = surface_distance.compute_surface_distances(gt, pred, spacing)
    return float(surface_distance.compute_surface_dice_at_tolerance(dists, tol))


def ellipsoid(shape: tuple[int, int, int], center: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    """Bool mask (z, y, x) of an axis-aligned ellipsoid, radii in voxels."""
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    terms = [((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), center, radii, strict=True)]
    return (terms[0] + terms[1] + terms[2]) <= 1.0


def synthetic_case(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A label map with four organs, and a prediction off its boundary by 0 to 2 voxels (uint8, zyx)."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    organs = [
        (1, (0.45, 0.45, 0.35), (0.3, 0.22, 0.2)),
        (2, (0.55, 0.6, 0.7), (0.1, 0.06, 0.04)),
        (2, (0.55, 0.6, 0.25), (0.1, 0.06, 0.04)),
        (3, (0.5, 0.45, 0.78), (0.15, 0.08, 0.06)),
        (4, (0.6, 0.55, 0.55), (0.05, 0.03, 0.12)),
    ]
    gt = np.zeros(shape, dtype=np.uint8)
    for label, center, radii in organs:
        gt[
            ellipsoid(
                shape,
                tuple(c * n for c, n in zip(center, shape, strict=True)),
                tuple(r * n for r, n in zip(radii, shape, strict=True)),
            )
        ] = label
    pred = np.zeros_like(gt)
    for label in ORGANS:
        mask = gt == label
        mask = ndimage.binary_dilation(mask, iterations=1) if label % 2 else ndimage.binary_erosion(mask)
        mask = np.roll(mask, shift=int(rng.integers(-1, 2)), axis=2)
        noise = ndimage.gaussian_filter(rng.standard_normal((z // 4 + 1, y // 8 + 1, x // 8 + 1)), 1.0)
        noise = ndimage.zoom(noise, (4, 8, 8), order=1)[:z, :y, :x] > 0.6
        edge = mask ^ ndimage.binary_erosion(mask)
        pred[(mask & ~(edge & noise)) & (pred == 0)] = label
    return gt, pred


def _real_rows(case: str, repeats: int) -> list[tuple[str, float, float, float, float]]:
    import SimpleITK as sitk

    path = shared_data_dir() / f"{case}.nii.gz"
    if not path.exists():
        print(f"skipping the real case: {path} not found", file=sys.stderr)
        return []
    image = sitk.ReadImage(str(path))
    labels = sitk.GetArrayFromImage(image).astype(np.uint8)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    rows = []
    for label, organ in ORGANS.items():
        gt = labels == label
        if not gt.any():
            continue
        pred = np.roll(ndimage.binary_dilation(gt), 1, axis=1)
        ours_s, ours_v = _best_time(lambda gt=gt, pred=pred: nsd(gt, pred, spacing, 1.0), repeats)
        ref_s, ref_v = _best_time(lambda gt=gt, pred=pred: _reference_nsd(gt, pred, spacing, 1.0), repeats)
        name = f"{case} {organ} ({'x'.join(map(str, labels.shape))}, {int(gt.sum())} voxels)"
        rows.append((name, ours_s, ref_s, ours_v, ref_v))
    return rows


def _synthetic_rows(
    shape: tuple[int, int, int], repeats: int
) -> tuple[list[tuple[str, float, float, float, float]], np.ndarray, np.ndarray, tuple[float, ...]]:
    gt_labels, pred_labels = synthetic_case(shape)
    rows = []
    spacings = [(2.5, 0.8, 0.8), (1.0, 1.0, 1.0), (5.0, 0.7, 0.7)]
    gt, pred = gt_labels == 1, pred_labels == 1
    for spacing in spacings:
        for tol in (1.0,) if spacing != spacings[0] else (1.0, 5.0):
            ours_s, ours_v = _best_time(lambda sp=spacing, t=tol: nsd(gt, pred, sp, t), repeats)
            ref_s, ref_v = _best_time(lambda sp=spacing, t=tol: _reference_nsd(gt, pred, sp, t), repeats)
            size = "x".join(map(str, shape))
            name = f"synthetic liver {size}, {spacing} mm, tol {tol:g} mm ({int(gt.sum())} voxels)"
            rows.append((name, ours_s, ref_s, ours_v, ref_v))
    return rows, gt_labels, pred_labels, spacings[0]


def _case_row(
    gt_labels: np.ndarray, pred_labels: np.ndarray, spacing: tuple[float, ...], repeats: int
) -> tuple[str, float, float, float, float]:
    def ours() -> float:
        scores = score_labels(gt_labels, pred_labels, spacing)
        return float(np.mean([s[1] for s in scores.values()]))

    def ref() -> float:
        return float(np.mean([_reference_nsd(gt_labels == v, pred_labels == v, spacing, 1.0) for v in ORGANS]))

    ours_s, ours_v = _best_time(ours, repeats)
    ref_s, ref_v = _best_time(ref, repeats)
    name = f"synthetic case, 4 organs, {'x'.join(map(str, gt_labels.shape))} (mean NSD; ours: DSC too)"
    return name, ours_s, ref_s, ours_v, ref_v


def format_table(rows: list[tuple[str, float, float, float, float]]) -> str:
    lines = [
        "| masks | ours (s) | reference (s) | reference / ours | NSD ours | abs. difference |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, ours_s, ref_s, ours_v, ref_v in rows:
        ratio, diff = ref_s / ours_s, abs(ours_v - ref_v)
        lines.append(f"| {name} | {ours_s:.4f} | {ref_s:.4f} | {ratio:.1f}x | {ours_v:.6f} | {diff:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (smoke test)")
    parser.add_argument("--case", nargs="+", default=["TSEX_0002", "TSDCM_0001"], help="real cases of the shared data")
    parser.add_argument("--repeats", type=int, default=None, help="best of N runs (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "nsd.md")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    shape = (32, 96, 96) if args.quick else (200, 512, 512)

    rows = [row for case in args.case for row in _real_rows(case, repeats)]
    synth, gt_labels, pred_labels, spacing = _synthetic_rows(shape, repeats)
    rows += synth
    rows.append(_case_row(gt_labels, pred_labels, spacing, repeats))
    header = (
        f"NSD benchmark ({'quick' if args.quick else 'full'}): best of {repeats}, one process, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"numpy {np.__version__}. Reference: surface-distance compute_surface_distances + "
        "compute_surface_dice_at_tolerance on the same masks."
    )
    text = header + "\n\n" + format_table(rows) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    worst = max(abs(r[3] - r[4]) for r in rows)
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
