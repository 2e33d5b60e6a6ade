"""Reading CT volumes, the canonical orientation, and atomic writing of label maps.

numpy arrays are zyx (index [z, y, x]); SimpleITK sizes, spacings and origins are xyz. This module is the only place
that converts between the two.

The canonical orientation is the one of an identity direction matrix: array axis x runs towards the patient's left,
y towards posterior, z towards superior (LPS). Any axis-aligned or near-axis-aligned direction is brought there by
permuting and flipping array axes only: no resampling, so the round trip is exact. An oblique direction is snapped
to its nearest axes the same way (the label map keeps the image's exact geometry; the network sees the body turned
by the angle), with a warning from :data:`OBLIQUE_WARN_DEGREES` on.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.names import name_problem
from inference.partial_files import publish, temp_file
from inference.preprocess import AIR_HU, memory_problem, replace_non_finite
from inference.task import INPUT_SUFFIX
from niftiio.native_stderr import captured_stderr
from niftiio.nifti_file import NiftiHeader, decode_fully, header_problem, read_header, trailer_problem

OUTPUT_SUFFIX = ".nii.gz"
NIFTI_UINT8 = 2  # the NIfTI data type code of the label maps
OBLIQUE_WARN_DEGREES = 1.0
"""A direction whose index axes lie this far (degrees) or more from their nearest world axes gets a warning."""


class InputError(Exception):
    """A case cannot be processed; the message names the file and the problem in one line."""


class OutputError(Exception):
    """A label map could not be written whole; the message names the file and the problem in one line."""


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

    @staticmethod
    def oblique_degrees(direction: tuple[float, ...]) -> float:
        """The largest angle (degrees) between an index axis of ``direction`` (9 floats, row-major 3x3, columns =
        index axes x, y, z in world) and the world axis nearest to it: 0 for an axis-aligned image."""
        d = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
        cosines = d.max(axis=0) / np.maximum(np.linalg.norm(d, axis=0), 1e-12)
        return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())

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
    reoriented; geometry: the input's origin, spacing and direction, for writing the output; warnings: one-line
    notes about what reading changed (non-finite voxels replaced by air), each naming the file.
    """

    image: np.ndarray
    spacing_zyx: tuple[float, float, float]
    orientation: Orientation
    geometry: Geometry
    warnings: tuple[str, ...] = ()


def case_name(path: Path) -> str:
    """`<case>_0000.nii.gz` -> `<case>`; ValueError for other names."""
    name = Path(path).name
    if not name.endswith(INPUT_SUFFIX) or len(name) == len(INPUT_SUFFIX):
        raise ValueError(f"{name}: not an input file name (<case>{INPUT_SUFFIX})")
    return name[: -len(INPUT_SUFFIX)]


# sitk pixel types of real scalar images -> numpy dtype (for the memory estimate, before decoding)
_PIXEL_DTYPES = {
    sitk.sitkUInt8: "uint8",
    sitk.sitkInt8: "int8",
    sitk.sitkUInt16: "uint16",
    sitk.sitkInt16: "int16",
    sitk.sitkUInt32: "uint32",
    sitk.sitkInt32: "int32",
    sitk.sitkUInt64: "uint64",
    sitk.sitkInt64: "int64",
    sitk.sitkFloat32: "float32",
    sitk.sitkFloat64: "float64",
}


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` (links followed) is not a regular file, in words; None when it is one.

    Checked before opening: opening a FIFO would block, and a link to a device reads without end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"dangling symbolic link (its target {os.readlink(path)} does not exist)"
        return "no such file"
    except PermissionError:
        return "permission denied (the folder cannot be searched)"
    except OSError as exc:  # a link loop, a name too long
        return f"cannot look up the file ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    link = f" (a symbolic link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    return f"is {file_kind(mode)}{link}, not an image file"


def file_kind(mode: int) -> str:
    """What a file of ``mode`` (an ``st_mode``) is, in words: "a regular file", "a folder", "a named pipe (FIFO)",
    "a character device", "a block device", "a socket" or "a symbolic link"."""
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _itk_reason(exc: Exception, noise: str) -> str:
    """The line of an ITK exception that says what went wrong, with what niftilib printed, in one line."""
    detail = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    reason = next((ln for ln in detail if "ERROR" in ln or "rror" in ln), detail[-1] if detail else "")
    reason = re.sub(r"^ITK ERROR: (\w+\(0x[0-9a-f]+\): )?", "", reason)
    return f"{reason}; {noise}"[:300] if noise else reason[:300]


def _check_file(path: Path) -> NiftiHeader | None:
    """Checks of the file's bytes before ITK reads it (regular file, readable, not empty, a sane NIfTI header, not
    truncated) and its name (UTF-8, which ITK needs). Returns the NIfTI header, None for files that are not NIfTI
    (left to ITK)."""
    problem = name_problem(path)
    if problem:
        raise InputError(problem)
    problem = not_a_regular_file(path)
    if problem:
        raise InputError(f"{path}: {problem}")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        header = read_header(path)  # opens the file: a permission problem shows here
        problem = header and (header_problem(header) or trailer_problem(path, header))
    except PermissionError:
        raise InputError(f"{path}: permission denied (the file is not readable)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if problem:
        raise InputError(f"{path}: {problem}")
    return header


def read_ct(path: Path) -> CTVolume:
    """Read a 3D scalar CT volume and bring it into canonical orientation.

    Raises InputError (one line naming the file) for a name that is not UTF-8 (:mod:`inference.names`), what is
    not a readable regular file, unreadable, truncated, 2D, 4D, vector and complex images, non-finite or
    non-positive spacings, and images that need more memory than the process may use (estimated from the header,
    before decoding). NaN and Inf voxels become air
    (:data:`AIR_HU`), with a note in ``warnings``. What ITK and niftilib print is folded into the messages.
    """
    path = Path(path)
    header = _check_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with captured_stderr() as noise:
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read image ({_itk_reason(exc, noise.summary())})") from None
    size, pixel = reader.GetSize(), reader.GetPixelID()
    _check_layout(path, reader.GetDimension(), size, reader.GetNumberOfComponents(), pixel)
    problem = memory_problem(size, np.dtype(_PIXEL_DTYPES[pixel]))
    if problem:
        raise InputError(f"{path}: {problem}")
    mask = None
    if header is not None and header.dtype.kind == "f":  # ITK reads NaN and Inf as 0: find them in the raw data
        try:
            decoded = decode_fully(path, header, find_non_finite=True)
        except OSError as exc:
            raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
        if decoded.problem:
            raise InputError(f"{path}: {decoded.problem}")
        mask = decoded.non_finite
    try:
        with captured_stderr() as noise:
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot read image ({_itk_reason(exc, noise.summary())})") from None
    warnings = [f"{path}: {noise.summary()}"] if noise.summary() else []
    return _canonical_volume(image, str(path), mask, warnings)


def ct_volume(image: sitk.Image, name: str = "image") -> CTVolume:
    """A 3D scalar CT image already in memory (SimpleITK, HU) in canonical orientation, as :func:`read_ct` gives a
    file's; ``name`` stands for the file in messages. InputError for what read_ct refuses in an image (not 3D, not
    scalar, complex voxels, a bad spacing or direction, every voxel NaN or Inf); NaN and Inf voxels become air."""
    _check_layout(
        name, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel(), image.GetPixelID()
    )
    return _canonical_volume(image, name, None, [])


def _check_layout(name: str | Path, dimension: int, size: tuple[int, ...], components: int, pixel: int) -> None:
    """InputError unless an image is 3D, scalar and of a real-valued pixel type."""
    if dimension != 3:
        raise InputError(f"{name}: expected a 3D image, got {dimension}D of size {size}")
    if components != 1:
        raise InputError(f"{name}: expected a scalar image, got {components} components")
    if pixel not in _PIXEL_DTYPES:
        raise InputError(
            f"{name}: {sitk.GetPixelIDValueAsString(pixel)} voxels are not supported (a real-valued scalar image is "
            f"needed)"
        )


def checked_orientation(image: sitk.Image, name: str, warnings: list[str]) -> Orientation:
    """The Orientation of ``image``'s direction; InputError naming ``name`` for a degenerate one, and a warning line
    appended to ``warnings`` for an oblique one (:data:`OBLIQUE_WARN_DEGREES` or more off the axes)."""
    direction = image.GetDirection()
    try:
        orientation = Orientation.from_direction(direction)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None
    angle = Orientation.oblique_degrees(direction)
    if angle >= OBLIQUE_WARN_DEGREES:
        warnings.append(
            f"{name}: the image axes are {angle:.1f} degrees off the patient's axes (an oblique direction); segmented "
            "as if aligned with the nearest axes, so the network sees the body turned by that angle (the label map "
            "keeps the image's geometry)"
        )
    return orientation


def _canonical_volume(image: sitk.Image, name: str, mask: np.ndarray | None, warnings: list[str]) -> CTVolume:
    """The CTVolume of a decoded image: spacing and direction checked, NaN and Inf voxels (and those ``mask``
    marks) made air, the array in canonical orientation. InputError naming ``name``."""
    spacing = image.GetSpacing()
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{name}: invalid voxel spacing {spacing} (must be finite and > 0)")
    orientation = checked_orientation(image, name, warnings)
    try:
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        raise InputError(f"{name}: cannot decode pixels ({str(exc).strip()[:200]})") from None
    replaced = replace_non_finite(array, mask) if array.dtype.kind == "f" else 0
    if replaced == array.size:
        raise InputError(f"{name}: every voxel is NaN or Inf")
    if replaced:
        warnings.append(f"{name}: {replaced} of {array.size} voxels are NaN or Inf; read as air ({AIR_HU:g} HU)")
    return CTVolume(
        image=np.ascontiguousarray(orientation.to_canonical(array)),
        spacing_zyx=orientation.spacing_zyx(spacing),
        orientation=orientation,
        geometry=Geometry.of(image),
        warnings=tuple(warnings),
    )


def _out_of_space(tmp: Path) -> bool:
    """Whether the file system holding ``tmp`` is full: no free block, or appending 64 KiB to ``tmp`` and syncing
    it fails with ENOSPC or EDQUOT (``tmp`` is a temporary file that is deleted afterwards)."""
    try:
        if os.statvfs(tmp.parent).f_bavail == 0:
            return True
        with open(tmp, "ab") as f:
            f.write(bytes(1 << 16))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return False


def written_file_problem(path: Path, shape_xyz: tuple[int, ...], datatype: int) -> str | None:
    """Check a file just written, after syncing it to disk: a NIfTI header of this size and data type, decoded in
    full (gzip stream complete, as many data bytes as the header needs). The problem in words, or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if os.stat(path).st_size == 0:
            return "the written file is empty (0 bytes)"
        header = read_header(path)
        if header is None:
            return "the written file has no NIfTI header"
        problem = header_problem(header)
        if problem:
            return f"the written file's header is wrong: {problem}"
        if header.size_xyz != tuple(shape_xyz) or header.datatype != datatype:
            return (
                f"the written file's header says size {header.size_xyz}, data type {header.datatype}; "
                f"expected {tuple(shape_xyz)}, {datatype}"
            )
        return decode_fully(path, header).problem
    except OSError as exc:
        return f"cannot check the written file ({exc.strerror or exc})"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; file systems that cannot sync a folder are let be."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def label_image(labels_canonical: np.ndarray, volume: CTVolume) -> sitk.Image:
    """A canonical (z, y, x) label map as a uint8 SimpleITK image in the input's original orientation and exact
    geometry (origin, spacing, direction). ValueError when its shape is not the volume's."""
    if labels_canonical.shape != volume.image.shape:
        raise ValueError(
            f"label map of shape {labels_canonical.shape} does not match the image's shape {volume.image.shape}"
        )
    labels = np.ascontiguousarray(volume.orientation.from_canonical(labels_canonical), dtype=np.uint8)
    out = sitk.GetImageFromArray(labels)
    volume.geometry.apply(out)
    return out


def write_labels(path: Path, labels_canonical: np.ndarray, volume: CTVolume) -> None:
    """Write a canonical (z, y, x) label map in the input's original orientation and exact geometry, as uint8.

    Written to a temporary file of the destination folder that this process holds
    (:func:`inference.partial_files.temp_file`), synced, checked by decoding it in full
    (:func:`written_file_problem`; ITK's writer reports neither a full disk nor other write errors, and anything it
    prints counts as an error), then renamed and recorded (:func:`inference.partial_files.publish`), and the folder
    synced: a file exists under the final name only when it is whole. Raises OutputError (one line naming the file;
    "no space left on device" when the file system is full; a name that is not UTF-8); the temporary file is
    removed then.
    """
    path = Path(path)
    problem = name_problem(path)
    if problem:
        raise OutputError(problem)
    out = label_image(labels_canonical, volume)
    try:
        with temp_file(path.parent) as tmp:
            try:
                with captured_stderr() as noise:
                    sitk.WriteImage(out, str(tmp), useCompression=True)
            except RuntimeError as exc:
                reason = _itk_reason(exc, noise.summary())
                raise OutputError(f"{path}: cannot write the label map ({reason})") from None
            problem = written_file_problem(tmp, out.GetSize(), NIFTI_UINT8)
            if noise.summary():  # ITK's warnings are errors here
                problem = f"the image writer reported: {noise.summary()}" + (f"; {problem}" if problem else "")
            if problem:
                if _out_of_space(tmp):
                    raise OutputError(f"{path}: no space left on device; the label map was not written ({problem})")
                raise OutputError(f"{path}: the label map was not written whole ({problem})")
            publish(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the label map ({exc.strerror or exc})") from None
