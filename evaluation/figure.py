"""Qualitative figure of one case: per organ, an axial slice with the image, the prediction and the ground
truth side by side (as figure 2 of the paper).

    python -m evaluation.figure --image CASE_0000.nii.gz --gt GT/CASE.nii.gz --pred PRED/CASE.nii.gz \\
        --out figure.png [--window -160 240]

For every organ present (in the ground truth, else in the prediction) the axial slice through the largest
cross-section of the ground truth's organ is shown: the CT image in a soft-tissue window, then the image with
the prediction's labels, then with the ground truth's. Slices are shown in radiological view (patient's
right on the left, anterior up) for axis-aligned directions.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from evaluation.labels_io import GridMismatchError, LabelReadError, check_same_grid, read_labels
from evaluation.task import IMAGE_SUFFIX, ORGANS
from niftiio.command_line import UsageParser

COLORS = {1: (0.85, 0.2, 0.2), 2: (0.2, 0.75, 0.2), 3: (0.2, 0.4, 0.95), 4: (0.95, 0.8, 0.1)}
SOFT_TISSUE_WINDOW = (-160.0, 240.0)


def organ_slices(gt: np.ndarray, pred: np.ndarray, labels: Sequence[int] = tuple(ORGANS)) -> dict[int, int]:
    """For each label present in gt (else in pred), the axial index z with the most voxels of that label.

    Args:
        gt, pred: integer label maps (z, y, x) of the same shape.
    """
    out = {}
    for label in labels:
        for source in (gt, pred):
            area = np.count_nonzero(source == label, axis=(1, 2))
            if area.any():
                out[label] = int(np.argmax(area))
                break
    return out


def _overlay(gray: np.ndarray, labels: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=2)
    for label, color in COLORS.items():
        mask = labels == label
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(color)
    return rgb


def qualitative_figure(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    out_path: str | Path,
    window: tuple[float, float] = SOFT_TISSUE_WINDOW,
    flip_yx: tuple[bool, bool] = (False, False),
    title: str = "",
) -> dict[int, int]:
    """Write the figure as PNG and return {label: axial index} of the rows drawn.

    Args:
        image: CT intensities in HU, shape (z, y, x).
        gt, pred: uint8 label maps of the same shape (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas).
        spacing_zyx_mm: voxel spacing (z, y, x) in mm, for the in-plane aspect ratio.
        out_path: PNG to write.
        window: intensity window (low, high) in HU.
        flip_yx: flip the rows / columns of every slice (to show a radiological view).
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if not (image.shape == gt.shape == pred.shape) or image.ndim != 3:
        raise ValueError(f"image, gt and pred must be 3D of one shape: {image.shape}, {gt.shape}, {pred.shape}")
    low, high = window
    if not high > low:
        raise ValueError(f"window must be (low, high) with high > low, got {window}")
    rows = organ_slices(gt, pred)
    aspect = float(spacing_zyx_mm[1]) / float(spacing_zyx_mm[2])
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 3, figsize=(9, 3.1 * n + 0.6), dpi=110, squeeze=False)

    def view(a: np.ndarray) -> np.ndarray:
        if flip_yx[0]:
            a = a[::-1]
        if flip_yx[1]:
            a = a[:, ::-1]
        return a

    for row, (label, z) in enumerate(rows.items()):
        gray = np.clip((image[z].astype(np.float64) - low) / (high - low), 0.0, 1.0)
        panels = [
            (np.repeat(gray[..., None], 3, axis=2), "image"),
            (_overlay(gray, pred[z]), "prediction"),
            (_overlay(gray, gt[z]), "ground truth"),
        ]
        for col, (rgb, name) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(view(rgb), aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
        axes[row, 0].set_ylabel(f"{ORGANS.get(label, label)}\n(slice z={z})")
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        axes[0, 1].text(0.5, 0.5, "no organ in ground truth or prediction", ha="center", va="center")
    handles = [Patch(color=c, label=ORGANS[v]) for v, c in COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out_path)
    plt.close(fig)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(
        prog="python -m evaluation.figure",
        description=__doc__,
    )
    parser.add_argument("--image", type=Path, required=True, help=f"CT image <case>{IMAGE_SUFFIX}")
    parser.add_argument("--gt", type=Path, required=True, help="ground-truth label map <case>.nii.gz")
    parser.add_argument("--pred", type=Path, required=True, help="predicted label map <case>.nii.gz")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=SOFT_TISSUE_WINDOW,
        metavar=("LOW", "HIGH"),
        help=f"display window in HU (default: {SOFT_TISSUE_WINDOW[0]:g} {SOFT_TISSUE_WINDOW[1]:g})",
    )
    args = parser.parse_args(argv)
    try:
        gt, gt_grid = read_labels(args.gt)
        pred, pred_grid = read_labels(args.pred)
        check_same_grid(gt_grid, pred_grid, args.pred)
        try:
            image_sitk = sitk.ReadImage(str(args.image))
        except RuntimeError:
            raise LabelReadError(f"{args.image}: unreadable image") from None
        image = sitk.GetArrayFromImage(image_sitk).astype(np.float32)
        if image.shape != gt.shape:
            raise GridMismatchError(f"{args.image}: shape {image.shape} differs from the ground truth's {gt.shape}")
        direction = gt_grid.direction
        flip = (direction[4] < 0, direction[0] < 0)  # y axis pointing anterior, x axis pointing right
        case = args.gt.name.removesuffix(".nii.gz")
        rows = qualitative_figure(image, gt, pred, gt_grid.spacing_zyx, args.out, tuple(args.window), flip, case)
    except (LabelReadError, GridMismatchError, ValueError) as err:
        return parser.fail(str(err))
    drawn = ", ".join(f"{ORGANS.get(v, v)} z={z}" for v, z in rows.items()) or "none"
    print(f"wrote {args.out} (slices: {drawn})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
