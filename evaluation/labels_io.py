"""Reading label maps for scoring, and checking that a prediction lies on its ground truth's grid.

SimpleITK gives sizes, spacings and origins in xyz order; the arrays returned here are zyx. Nothing is
resampled: a prediction on another grid is an error, never silently moved onto the ground truth's.

A NIfTI file is checked and decoded in full before ITK reads it, with the same check inference applies to the
label maps it writes (niftiio.nifti_file): ITK reads a truncated .nii.gz without complaint, and NaN or Inf voxels
as 0, so a float label map holding them is refused like any other non-integer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from niftiio.native_stderr import captured_stderr
from niftiio.nifti_file import decode_fully, header_problem, read_header
from niftiio.wording import count


class LabelReadError(Exception):
    """A label file could not be read as a 3D integer label map (message: one line, names the file)."""


class GridMismatchError(Exception):
    """A prediction does not lie on its ground truth's grid (message: one line, names the file)."""


@dataclass(frozen=True)
class Grid:
    """Geometry of an image as SimpleITK reports it: size_xyz (voxels), spacing_xyz and origin_xyz (mm),
    direction (row-major 3x3 direction cosines)."""

    size_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing in mm in the arrays' (z, y, x) order."""
        return self.spacing_xyz[2], self.spacing_xyz[1], self.spacing_xyz[0]

    @classmethod
    def of(cls, image: sitk.Image) -> Grid:
        return cls(
            size_xyz=tuple(int(v) for v in image.GetSize()),
            spacing_xyz=tuple(float(v) for v in image.GetSpacing()),
            origin_xyz=tuple(float(v) for v in image.GetOrigin()),
            direction=tuple(float(v) for v in image.GetDirection()),
        )


def read_labels(path: str | Path) -> tuple[np.ndarray, Grid]:
    """Read a 3D label map.

    Args:
        path: a NIfTI (or any SimpleITK-readable) file of integer labels in 0..255.

    Returns:
        (labels, grid): labels a uint8 array of shape (z, y, x); grid its geometry (xyz, mm).

    Raises:
        LabelReadError: unreadable, empty, truncated or corrupt (the full-decode check), not 3D, not scalar,
            non-integer or out-of-range values.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelReadError(f"{path}: no such file")
    problem = _file_problem(path)
    if problem:
        raise LabelReadError(f"{path}: {problem}")
    try:
        with captured_stderr() as noise:
            image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)  # a copy: a view would dangle once image is freed
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        first = next((ln for ln in lines if "ERROR" in ln), lines[0] if lines else "unknown error")
        extra = f"; {noise.summary()}" if noise.summary() else ""
        raise LabelReadError(f"{path}: unreadable ({first[:200]}{extra[:200]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise LabelReadError(
            f"{path}: expected a 3D scalar label map, got {image.GetDimension()}D with "
            f"{count(image.GetNumberOfComponentsPerPixel(), 'component')}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise LabelReadError(f"{path}: labels must be integers, got non-integer {array.dtype} values")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise LabelReadError(f"{path}: labels must lie in 0..255, got {array.min()}..{array.max()}")
    return np.asarray(array, dtype=np.uint8), Grid.of(image)


def _file_problem(path: Path) -> str | None:
    """The bytes' check: not empty, a sane NIfTI header, decoded in full, no NaN or Inf voxel (ITK would read them as
    0, background); a problem in words or None. Files that are not NIfTI are left to the image reader."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        header = read_header(path)
        if header is None:
            return None
        problem = header_problem(header)
        if problem:
            return problem
        decoded = decode_fully(path, header, find_non_finite=True)
        if decoded.problem or decoded.non_finite is None:
            return decoded.problem
        bad = int(decoded.non_finite.sum())
        return f"labels must be integers, got {count(bad, 'NaN or Inf voxel')} ({header.dtype.name})"
    except OSError as err:
        return f"cannot read the file ({err.strerror or err})"


def unknown_labels(labels: np.ndarray, known: Sequence[int]) -> dict[int, int]:
    """{label: voxel count} of the labels of a uint8 label map that are not in ``known``."""
    if labels.size == 0 or (int(labels.max()) <= max(known) and set(range(max(known) + 1)) <= set(known)):
        return {}
    counts = np.bincount(labels.ravel(), minlength=256)
    return {int(v): int(counts[v]) for v in np.flatnonzero(counts) if int(v) not in set(known)}


def check_same_grid(
    gt: Grid,
    pred: Grid,
    pred_path: str | Path,
    spacing_tol_mm: float = 1e-3,
    origin_tol_mm: float = 1e-2,
    direction_tol: float = 1e-4,
) -> None:
    """Raise GridMismatchError unless ``pred`` lies on ``gt``'s grid.

    Sizes must be equal; spacing, origin (mm) and direction cosines must agree within the tolerances
    (NIfTI stores them as float32, so exact equality is too strict).
    """
    if gt.size_xyz != pred.size_xyz:
        raise GridMismatchError(f"{pred_path}: size {pred.size_xyz} differs from ground truth's {gt.size_xyz}")
    checks = (
        ("spacing", gt.spacing_xyz, pred.spacing_xyz, spacing_tol_mm),
        ("origin", gt.origin_xyz, pred.origin_xyz, origin_tol_mm),
        ("direction", gt.direction, pred.direction, direction_tol),
    )
    for name, want, got, tol in checks:
        diff = float(np.max(np.abs(np.subtract(want, got))))
        if not diff <= tol:
            want_s = ", ".join(f"{v:.6g}" for v in want)
            got_s = ", ".join(f"{v:.6g}" for v in got)
            raise GridMismatchError(
                f"{pred_path}: {name} ({got_s}) differs from the ground truth's ({want_s}) "
                f"by {diff:.3g} > {tol:g}; predictions must be written on the ground truth's grid"
            )
