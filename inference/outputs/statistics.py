"""Per-organ statistics of a segmented case: volume, CT intensities and extent, as JSON per case and CSV across
cases.

For each organ of :data:`inference.task.ORGANS` (present or not), a dict:

- ``label``: the organ's label id;
- ``voxels``: number of voxels labelled with it;
- ``volume_ml``: voxels x voxel volume (product of the spacing, mm^3) / 1000, in millilitres;
- ``hu_mean``, ``hu_median``, ``hu_std``: mean, median and population standard deviation (ddof 0, so defined for
  one voxel) of the CT's intensities inside the organ, in HU; None when the organ is absent;
- ``bbox_index_xyz``: ``[[x_min, y_min, z_min], [x_max, y_max, z_max]]``, inclusive voxel indices in the image
  file's own index order (as ITK-SNAP or 3D Slicer show them); None when absent.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.outputs.files import write_bytes
from inference.task import ORGANS

CSV_COLUMNS = (
    "case",
    "organ",
    "label",
    "voxels",
    "volume_ml",
    "hu_mean",
    "hu_median",
    "hu_std",
    "x_min",
    "y_min",
    "z_min",
    "x_max",
    "y_max",
    "z_max",
)


def organ_statistics(label: sitk.Image, image: sitk.Image) -> dict[str, dict]:
    """Statistics of every organ (see the module's docstring), keyed by organ name in label order.

    Args:
        label: integer label map (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas), 3D.
        image: the CT in HU on the same grid (same size; spacing taken from ``label``).
    Raises:
        ValueError: the two are not 3D images of one size.
    """
    if label.GetDimension() != 3 or image.GetDimension() != 3 or label.GetSize() != image.GetSize():
        raise ValueError(f"label map of size {label.GetSize()} and image of size {image.GetSize()}: not one 3D grid")
    labels = sitk.GetArrayViewFromImage(label)  # (z, y, x)
    values = sitk.GetArrayViewFromImage(image)
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    return {name: _one_organ(labels == value, values, value, voxel_ml) for value, name in ORGANS.items()}


def _one_organ(mask: np.ndarray, values: np.ndarray, value: int, voxel_ml: float) -> dict:
    count = int(np.count_nonzero(mask))
    entry: dict = {"label": value, "voxels": count, "volume_ml": count * voxel_ml}
    if count == 0:
        return entry | {"hu_mean": None, "hu_median": None, "hu_std": None, "bbox_index_xyz": None}
    inside = values[mask].astype(np.float64)
    lows, highs = [], []
    for axis in range(3):  # numpy axes z, y, x
        present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
        lows.append(int(present[0]))
        highs.append(int(present[-1]))
    return entry | {
        "hu_mean": float(inside.mean()),
        "hu_median": float(np.median(inside)),
        "hu_std": float(inside.std()),
        "bbox_index_xyz": [lows[::-1], highs[::-1]],
    }


def write_statistics_json(statistics: Mapping[str, dict], path: Path) -> Path:
    """Write one case's statistics (as :func:`organ_statistics` returns them) as indented JSON, whole."""
    return write_bytes((json.dumps(statistics, indent=2) + "\n").encode(), Path(path))


def write_statistics_csv(statistics_by_case: Mapping[str, Mapping[str, dict]], path: Path) -> Path:
    """Write the statistics of several cases ({case: statistics}) as one CSV, a row per case and organ in the
    order given (columns :data:`CSV_COLUMNS`; empty cells where an organ is absent)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case, statistics in statistics_by_case.items():
        for organ, entry in statistics.items():
            box = entry["bbox_index_xyz"]
            corners = [*box[0], *box[1]] if box else [""] * 6
            hu = ["" if entry[k] is None else repr(entry[k]) for k in ("hu_mean", "hu_median", "hu_std")]
            writer.writerow([case, organ, entry["label"], entry["voxels"], repr(entry["volume_ml"]), *hu, *corners])
    return write_bytes(text.getvalue().encode(), Path(path))
