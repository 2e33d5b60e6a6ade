"""DICOM series: finding them in a folder, checking their slice geometry, reading one as a CT volume.

A series is the slices of one SeriesInstanceUID in one folder (subfolders are not searched here). Its slices are
ordered along the normal of their common orientation (row x column direction cosines) by their
ImagePositionPatient. Refused with one line naming the folder and the series: slices of different orientations,
two slices at one position, gantry tilt (consecutive slices shifted within their plane, so that the voxel grid is
sheared, which a direction matrix cannot express) and uneven slice spacing (a missing slice, or a series that
changes its spacing): ITK would read either onto a regular grid in the wrong place. Pixel values are rescaled to
HU with the slices' RescaleSlope and RescaleIntercept (GDCM does it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.ct_io import CTVolume, InputError, ct_volume
from inference.names import name_problem
from inference.preprocess import memory_problem
from niftiio.native_stderr import captured_stderr
from niftiio.wording import count

POSITION, ORIENTATION = "0020|0032", "0020|0037"
SERIES_UID, SERIES_NUMBER, SERIES_DESCRIPTION = "0020|000e", "0020|0011", "0008|103e"
ROWS, COLUMNS = "0028|0010", "0028|0011"
MAX_TILT_DEGREES = 0.1
"""Consecutive slices shifted in-plane by more than this angle (seen from the normal) are a gantry tilt."""
SPACING_TOLERANCE = 0.01
"""Slice gaps may differ from their median by this fraction of it (and at least 0.02 mm) and still be even."""


@dataclass(frozen=True)
class DicomSeries:
    """One series of a folder: its folder, SeriesInstanceUID, slice files (in the order GDCM lists them; reading
    orders them along the normal), SeriesNumber and SeriesDescription ('' when absent)."""

    folder: Path
    uid: str
    files: tuple[Path, ...]
    number: str = ""
    description: str = ""

    def describe(self) -> str:
        """``<folder> (DICOM series <number or UID>)``: how messages name the series."""
        return f"{self.folder} (DICOM series {self.number or self.uid})"


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a regular file with the DICOM preamble (b"DICM" after 128 bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def _file_tags(path: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """The given tags of one DICOM file ('' for those it lacks); InputError when the file is not readable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("GDCMImageIO")
    try:
        with captured_stderr():
            reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"{path}: not a readable DICOM image") from None
    return {key: _tag(reader, key) for key in keys}


def find_series(folder: Path) -> list[DicomSeries]:
    """The DICOM series whose slices lie directly in ``folder``, ordered by SeriesNumber then UID; [] for none, and
    for a folder whose name GDCM cannot take (not UTF-8, :mod:`inference.names`)."""
    folder = Path(folder)
    if name_problem(folder):
        return []
    with captured_stderr():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    series = []
    for uid in uids:
        with captured_stderr():
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        if not names:
            continue
        try:
            tags = _file_tags(Path(names[0]), (SERIES_NUMBER, SERIES_DESCRIPTION))
        except InputError:
            tags = {SERIES_NUMBER: "", SERIES_DESCRIPTION: ""}
        files = tuple(Path(n) for n in names)
        series.append(DicomSeries(folder, uid, files, tags[SERIES_NUMBER], tags[SERIES_DESCRIPTION]))
    return sorted(series, key=lambda s: (_number_key(s.number), s.uid))


def _number_key(number: str) -> tuple[int, float, str]:
    try:
        return (0, float(number), number)
    except ValueError:
        return (1, 0.0, number)


def series_case_names(folder_name: str, series: list[DicomSeries]) -> list[str]:
    """A case name for each series of one folder: the folder's name when it holds one series; else
    ``<folder>_series<SeriesNumber>`` (``<folder>_<SeriesInstanceUID>`` when the numbers are missing or repeat).
    Characters other than letters, digits, '.', '_' and '-' become '_'."""
    if len(series) == 1:
        names = [folder_name]
    elif all(s.number for s in series) and len({s.number for s in series}) == len(series):
        names = [f"{folder_name}_series{s.number}" for s in series]
    else:
        names = [f"{folder_name}_{s.uid}" for s in series]
    return [re.sub(r"[^A-Za-z0-9._-]", "_", n) for n in names]


def _floats(text: str, count: int, what: str, path: Path) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split("\\")], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if values.size != count or not np.all(np.isfinite(values)):
        raise InputError(f"{path}: {what} {text!r} is not {count} numbers")
    return values


def slice_geometry_problem(positions: np.ndarray, orientation: np.ndarray) -> str | None:
    """Why slices at ``positions`` cannot form a regular 3D grid, in words; None when they can.

    Args:
        positions: (n, 3) ImagePositionPatient of the slices, mm, any order.
        orientation: the six direction cosines of ImageOrientationPatient (row, then column), common to all.
    """
    if len(positions) < 2:
        return f"{count(len(positions), 'slice')}: a volume needs at least 2"
    normal = np.cross(orientation[:3], orientation[3:])
    normal /= np.linalg.norm(normal)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    gaps = np.diff(along[order])
    if gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        return f"two slices at one position ({along[order][i]:.2f} mm along the normal): a duplicate slice?"
    steps = np.diff(positions[order], axis=0)
    shift = np.linalg.norm(steps - gaps[:, None] * normal, axis=1)
    tilt = np.degrees(np.arctan2(shift, gaps))
    if tilt.max() > MAX_TILT_DEGREES:
        return (
            f"gantry tilt of {tilt.max():.1f} degrees (each slice shifted {shift.max():.2f} mm within its plane); "
            "resample the series onto an untilted grid first (dcm2niix does)"
        )
    median = float(np.median(gaps))
    uneven = np.abs(gaps - median) > max(0.02, SPACING_TOLERANCE * median)
    if uneven.any():
        i = int(np.flatnonzero(uneven)[0])
        return (
            f"uneven slice spacing: gaps of {gaps.min():.3g} to {gaps.max():.3g} mm (median {median:.3g} mm; "
            f"{gaps[i]:.3g} mm after slice {i + 1} of {len(positions)}: a missing slice?); "
            "resample the series to even spacing first"
        )
    return None


def read_series(series: DicomSeries) -> CTVolume:
    """Read one series as a CT volume in canonical orientation (see :func:`inference.ct_io.read_ct`).

    Raises:
        InputError: one line naming the series: a file name that is not UTF-8, an unreadable slice, missing or
            differing orientation, a geometry :func:`slice_geometry_problem` refuses, too large for the memory, or
            what ITK reports.
    """
    where = series.describe()
    problem = next(filter(None, map(name_problem, (series.folder, *series.files))), None)
    if problem:
        raise InputError(problem)
    tags = [_file_tags(p, (POSITION, ORIENTATION, ROWS, COLUMNS)) for p in series.files]
    orientations = {t[ORIENTATION] for t in tags}
    if len(orientations) != 1:
        raise InputError(f"{where}: slices of {len(orientations)} different orientations (ImageOrientationPatient)")
    orientation = _floats(orientations.pop(), 6, "ImageOrientationPatient", series.files[0])
    positions = np.array([_floats(t[POSITION], 3, "ImagePositionPatient", p) for t, p in zip(tags, series.files)])
    problem = slice_geometry_problem(positions, orientation)
    if problem:
        raise InputError(f"{where}: {problem}")
    if len({(t[ROWS], t[COLUMNS]) for t in tags}) != 1:
        raise InputError(f"{where}: slices of different sizes (Rows, Columns)")
    size = (int(tags[0][COLUMNS] or 0), int(tags[0][ROWS] or 0), len(tags))
    problem = memory_problem(size, np.dtype(np.int16))
    if problem:
        raise InputError(f"{where}: {problem}")
    normal = np.cross(orientation[:3], orientation[3:])
    order = np.argsort(positions @ normal, kind="stable")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(series.files[i]) for i in order])
    try:
        with captured_stderr() as noise:
            image = reader.Execute()
    except RuntimeError as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "read failed")
        raise InputError(f"{where}: cannot read the series ({detail[:200]})") from None
    volume = ct_volume(image, where)
    z_spacing = float(np.median(np.diff(np.sort(positions @ normal))))
    if not math.isclose(image.GetSpacing()[2], z_spacing, rel_tol=SPACING_TOLERANCE, abs_tol=0.02):
        raise InputError(
            f"{where}: read with slice spacing {image.GetSpacing()[2]:g} mm, the positions say {z_spacing:g}"
        )
    if noise.summary():
        volume.warnings = (*volume.warnings, f"{where}: {noise.summary()}")
    return volume
