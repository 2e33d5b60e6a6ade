"""Reading CT volumes, the canonical orientation, and atomic writing of label maps.

numpy arrays are zyx (index [z, y, x]); SimpleITK sizes, spacings and origins are xyz. This module is the only place
that converts between the two.

The canonical orientation is the one of an identity direction matrix: array axis x runs towards the patient's left,
y towards posterior, z towards superior (LPS). Any axis-aligned or near-axis-aligned direction is brought there by
permuting and flipping array axes only: no resampling, so the round trip is exact.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

INPUT_SUFFIX = "_0000.nii.gz"
OUTPUT_SUFFIX = ".nii.gz"


class InputError(Exception):
    """A case cannot be processed; the message names the file and the problem in one line."""


@dataclass(frozen=True)
class Orientation:
    """How to bring a zyx array into canonical orientation.

    perm: canonical array axis k is input array axis perm[k]; flip: canonical axis k is reversed when flip[k].
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def from_direction(cls, direction: tuple[float, ...]) -> Orientation:
        """From a SimpleITK direction (9 floats, row-major 3x3, columns = image index axes x, y, z in world)."""
        d = np.asarray(direction, dtype=float).reshape(3, 3)
        world_of_index = np.argmax(np.abs(d), axis=0)  # for index axis i (x, y, z): nearest world axis
        if sorted(world_of_index) != [0, 1, 2]:
            raise ValueError(f"direction {tuple(direction)} is degenerate")
        sign = np.sign(d[world_of_index, [0, 1, 2]])
        perm, flip = [0, 0, 0], [False, False, False]
        for index_axis in range(3):
            world_axis = int(world_of_index[index_axis])
            # numpy axis of index axis i is 2 - i; canonical numpy axis of world axis w is 2 - w
            perm[2 - world_axis] = 2 - index_axis
            flip[2 - world_axis] = bool(sign[index_axis] < 0)
        return cls(tuple(perm), tuple(flip))

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """(z, y, x) array in the image's index order -> canonical (z, y, x) array (a view when possible)."""
        out = np.transpose(array, self.perm)
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_canonical`."""
        out = array[tuple(slice(None, None, -1) if f else slice(None) for f in self.flip)]
        return np.transpose(out, np.argsort(self.perm))

    def spacing_zyx(self, spacing_xyz: tuple[float, float, float]) -> tuple[float, float, float]:
        """The canonical array's voxel spacing in mm, zyx order."""
        zyx = tuple(float(s) for s in reversed(spacing_xyz))
        return tuple(zyx[p] for p in self.perm)


@dataclass(frozen=True)
class Geometry:
    """Where the input's voxels lie, as SimpleITK gives it: origin (mm, xyz), spacing (mm, xyz), direction (9
    floats, row-major 3x3). The output label map gets exactly these."""

    origin: tuple[float, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(image.GetOrigin(), image.GetSpacing(), image.GetDirection())

    def apply(self, image: sitk.Image) -> None:
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)


@dataclass
class CTVolume:
    """A CT volume in canonical orientation.

    image: int16/float array (z, y, x) in HU, canonical orientation; spacing_zyx: mm; orientation: how it was
    reoriented; geometry: the input's origin, spacing and direction, for writing the output.
    """

    image: np.ndarray
    spacing_zyx: tuple[float, float, float]
    orientation: Orientation
    geometry: Geometry


def case_name(path: Path) -> str:
    """`<case>_0000.nii.gz` -> `<case>`; ValueError for other names."""
    name = Path(path).name
    if not name.endswith(INPUT_SUFFIX) or len(name) == len(INPUT_SUFFIX):
        raise ValueError(f"{name}: not an input file name (<case>{INPUT_SUFFIX})")
    return name[: -len(INPUT_SUFFIX)]


def nifti_header_problem(path: Path) -> str | None:
    """Check a NIfTI-1/2 file (.nii or .nii.gz) before ITK reads it; a problem in words, or None.

    ITK silently replaces a zero or non-finite pixdim by 1 mm and reads a truncated .nii.gz without complaint, so
    the raw header is checked here: the voxel sizes, and the data size against the file's length (for gzip, the
    uncompressed length that its trailer records). Files that are not NIfTI are left to the image reader.
    """
    path = Path(path)
    gz = path.name.endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            head = f.read(540)
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", f.read(4))[0] if gz else path.stat().st_size
    except (OSError, EOFError, gzip.BadGzipFile):
        return None  # not gzip or unreadable: the image reader reports it
    for endian in "<>":
        size = struct.unpack(endian + "i", head[:4])[0] if len(head) >= 348 else 0
        if size == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            pixdim = struct.unpack(endian + "8f", head[76:108])
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if size == 540 and len(head) >= 540:
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            pixdim = struct.unpack(endian + "8d", head[104:168])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = min(max(int(dims[0]), 0), 7)
    spacing = pixdim[1 : 1 + min(ndim, 3)]
    if not all(math.isfinite(v) and v != 0 for v in spacing):
        return f"invalid voxel spacing {tuple(spacing)} in the NIfTI header (must be finite and non-zero)"
    expected = max(offset, size) + math.prod(max(int(d), 1) for d in dims[1 : 1 + ndim]) * max(bitpix, 8) // 8
    if (gz and stored != expected % 2**32) or (not gz and stored < expected):
        where = "its gzip trailer records" if gz else "the file holds"
        return f"truncated or corrupt file (the header needs {expected} bytes, {where} {stored})"
    return None


def read_ct(path: Path) -> CTVolume:
    """Read a 3D scalar CT volume and bring it into canonical orientation.

    Raises InputError (one line naming the file) for unreadable, truncated, 2D, 4D, vector images and for
    non-finite or non-positive spacings.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        problem = nifti_header_problem(path)
        if problem:
            raise InputError(f"{path}: {problem}")
        image = sitk.ReadImage(str(path))
    except InputError:
        raise
    except (RuntimeError, OSError) as exc:
        detail = str(exc).strip().splitlines()
        reason = next((ln.strip() for ln in detail if "ERROR" in ln or "rror" in ln), detail[-1] if detail else "")
        raise InputError(f"{path}: cannot read image ({reason[:200]})") from None
    if image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3D image, got {image.GetDimension()}D of size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components")
    spacing = image.GetSpacing()
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{path}: invalid voxel spacing {spacing} (must be finite and > 0)")
    try:
        orientation = Orientation.from_direction(image.GetDirection())
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    try:
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot decode pixels ({str(exc).strip()[:200]})") from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{path}: image holds non-finite values")
    return CTVolume(
        image=np.ascontiguousarray(orientation.to_canonical(array)),
        spacing_zyx=orientation.spacing_zyx(spacing),
        orientation=orientation,
        geometry=Geometry.of(image),
    )


def write_labels(path: Path, labels_canonical: np.ndarray, volume: CTVolume) -> None:
    """Write a canonical (z, y, x) label map in the input's original orientation and exact geometry, as uint8.

    Written to a hidden temporary file in the destination folder and renamed, so no partial file is ever visible
    under the final name.
    """
    path = Path(path)
    if labels_canonical.shape != volume.image.shape:
        raise ValueError(
            f"label map of shape {labels_canonical.shape} does not match the image's shape {volume.image.shape}"
        )
    labels = np.ascontiguousarray(volume.orientation.from_canonical(labels_canonical), dtype=np.uint8)
    out = sitk.GetImageFromArray(labels)
    volume.geometry.apply(out)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{OUTPUT_SUFFIX}")
    try:
        sitk.WriteImage(out, str(tmp), useCompression=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
