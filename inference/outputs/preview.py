"""A preview PNG of a segmented case, no reference needed: for each organ present, an axial, a coronal and a
sagittal slice through the organ (its largest cross-section), with every organ outlined.

Volumes are reoriented to LPS first (array axes along +S, +P, +L), so that each view is shown as radiologists read
it: axial with the patient's right on the image's left and anterior at the top; coronal and sagittal with the head
at the top. CT in a soft-tissue window (W400/L40). Outlines: liver red, kidney yellow, spleen blue, pancreas green.
Needs matplotlib (a development requirement, not one of the container's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.task import ORGANS

COLORS = {1: "red", 2: "yellow", 3: "deepskyblue", 4: "lime"}
"""Outline colour of each organ label."""
WINDOW_HU = (40 - 200, 40 + 200)
"""Display window (low, high) in HU: W400/L40."""


def to_lps_arrays(image: sitk.Image, label: sitk.Image) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(image zyx, label zyx, spacing xyz mm) reoriented so that the array axes run along +S, +P, +L."""
    img = sitk.DICOMOrient(image, "LPS")
    lab = sitk.DICOMOrient(label, "LPS")
    return sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(lab), img.GetSpacing()


def draw_panel(ax, img2d: np.ndarray, lab2d: np.ndarray, aspect: float, title: str) -> None:
    """Draw one slice on a matplotlib axis: the CT in :data:`WINDOW_HU`, each organ of ``lab2d`` outlined."""
    ax.imshow(img2d, cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=aspect, interpolation="nearest")
    for lab, color in COLORS.items():
        m = lab2d == lab
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=color, linewidths=0.7)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def organ_slices(label_lps: np.ndarray) -> dict[str, tuple[int, int, int]]:
    """{organ name: (z, y, x)} for each organ present in a (z, y, x) label map, in label order: along each axis,
    the slice with the organ's largest cross-section (so each view shows the organ, both kidneys included)."""
    out = {}
    for value, name in ORGANS.items():
        mask = label_lps == value
        if mask.any():
            areas = (np.count_nonzero(mask, axis=tuple(a for a in range(3) if a != axis)) for axis in range(3))
            out[name] = tuple(int(np.argmax(area)) for area in areas)
    return out


def preview_png(image: sitk.Image, label: sitk.Image, path: Path, title: str = "") -> dict[str, tuple[int, int, int]]:
    """Write the preview PNG and return {organ: (z, y, x)} of the slices drawn (LPS array indices), one row per
    organ present; a volume without any organ gets one row through its centre, titled so.

    Args:
        image: the CT in HU; label: its label map (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas), same
            size. path: the PNG to write (its folder must exist). title: the figure's title (e.g. the case).
    Raises:
        ValueError: image and label differ in size. RuntimeError: matplotlib is not installed.
    """
    if image.GetSize() != label.GetSize():
        raise ValueError(f"image of size {image.GetSize()} and label map of size {label.GetSize()}: not one grid")
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("a preview needs matplotlib, which is not installed (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    img, lab, (sx, sy, sz) = to_lps_arrays(image, label)
    slices = organ_slices(lab)
    rows = slices or {"no organ found": tuple(n // 2 for n in lab.shape)}
    fig, axes = plt.subplots(len(rows), 3, figsize=(9.6, 3.3 * len(rows) + 0.5), squeeze=False)
    for row, (name, (z, y, x)) in enumerate(rows.items()):
        draw_panel(axes[row, 0], img[z], lab[z], sy / sx, f"{name}: axial z={z}/{img.shape[0]}")
        draw_panel(axes[row, 1], img[::-1, y, :], lab[::-1, y, :], sz / sx, f"coronal y={y}/{img.shape[1]}")
        draw_panel(axes[row, 2], img[::-1, :, x], lab[::-1, :, x], sz / sy, f"sagittal x={x}/{img.shape[2]}")
    handles = [Line2D([], [], color=COLORS[v], label=n) for v, n in ORGANS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return slices
