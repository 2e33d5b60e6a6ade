"""The bytes of a NIfTI-1/2 file (.nii or .nii.gz): its header, checked before ITK reads it, and a full decode.

ITK replaces a zero or non-finite pixdim by 1 mm, reads a truncated .nii.gz without complaint, reads NaN and Inf
voxels as 0, and its writer does not report write errors (a full disk leaves a short file). So the raw header is
checked here, and a file can be decoded in full without ITK: the gzip stream complete with its CRC, the header
sane, and as many data bytes as the header's size and data type need.

Sizes here are in the file's order: x fastest, so a flat voxel index is the index into the (z, y, x) array that
SimpleITK returns for a 3D image.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# NIfTI datatype codes this code reads: code -> numpy dtype name (the byte order comes from the header)
DATATYPES = {
    2: "uint8",
    4: "int16",
    8: "int32",
    16: "float32",
    64: "float64",
    256: "int8",
    512: "uint16",
    768: "uint32",
    1024: "int64",
    1280: "uint64",
}
# codes that are valid NIfTI but not a real-valued scalar image
NOT_REAL = {
    1: "1-bit (binary)",
    32: "complex64",
    128: "RGB (3 x uint8)",
    1536: "float128",
    1792: "complex128",
    2048: "complex256",
    2304: "RGBA (4 x uint8)",
}
_CHUNK = 1 << 22  # bytes of compressed data per read


@dataclass(frozen=True)
class NiftiHeader:
    """What this module needs of a NIfTI-1/2 header.

    dims: the 8 `dim` entries as stored (dim[0] the number of dimensions, then the sizes, x first); spacing: the
    pixdim entries 1..3 (mm); data_offset: where the voxels start in the uncompressed bytes; byte_order: "<" or ">".
    """

    dims: tuple[int, ...]
    datatype: int
    bitpix: int
    spacing: tuple[float, ...]
    data_offset: int
    byte_order: str

    @property
    def ndim(self) -> int:
        return self.dims[0]

    @property
    def size_xyz(self) -> tuple[int, ...]:
        """The image size (voxels), x first; only meaningful when :func:`header_problem` found nothing."""
        return tuple(self.dims[1 : 1 + self.ndim])

    @property
    def dtype(self) -> np.dtype | None:
        """The voxels' numpy dtype in the file's byte order, None for codes this code does not read."""
        name = DATATYPES.get(self.datatype)
        return None if name is None else np.dtype(name).newbyteorder(self.byte_order)

    @property
    def voxels(self) -> int:
        return math.prod(self.size_xyz)

    @property
    def data_bytes(self) -> int:
        return self.voxels * self.dtype.itemsize


def _first_bytes(path: Path, n: int) -> bytes:
    """The first n uncompressed bytes (fewer if the file is shorter); OSError when it cannot be read."""
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            f.seek(0)
            return f.read(n)
        f.seek(0)
        inflate = zlib.decompressobj(wbits=31)
        out = b""
        while len(out) < n:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            try:
                out += inflate.decompress(chunk, n - len(out))
            except zlib.error:
                break
            if inflate.eof:
                break
        return out


def read_header(path: Path) -> NiftiHeader | None:
    """The NIfTI-1 or NIfTI-2 header of a file (gzip or not); None when the file is not NIfTI.

    Raises OSError when the file cannot be read.
    """
    head = _first_bytes(Path(path), 540)
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0] if len(head) >= 348 else 0
        if size == 348:
            dims = struct.unpack(order + "8h", head[40:56])
            datatype, bitpix = struct.unpack(order + "2h", head[70:74])
            pixdim = struct.unpack(order + "8f", head[76:108])
            offset = struct.unpack(order + "f", head[108:112])[0]
            offset = int(offset) if math.isfinite(offset) else -1
            return NiftiHeader(dims, datatype, bitpix, pixdim[1:4], max(offset, 348), order)
        if size == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack(order + "2h", head[12:16])
            dims = struct.unpack(order + "8q", head[16:80])
            pixdim = struct.unpack(order + "8d", head[104:168])
            offset = struct.unpack(order + "q", head[168:176])[0]
            return NiftiHeader(dims, datatype, bitpix, pixdim[1:4], max(offset, 540), order)
    return None


def header_problem(header: NiftiHeader) -> str | None:
    """A problem of the header in words (size, data type, voxel spacing), or None."""
    if not 1 <= header.ndim <= 7:
        return f"invalid number of dimensions dim[0] = {header.ndim} in the NIfTI header (must be 1 to 7)"
    if min(header.size_xyz) < 1:
        return f"invalid image size {header.size_xyz} in the NIfTI header (every size must be >= 1)"
    if header.datatype in NOT_REAL:
        return f"{NOT_REAL[header.datatype]} voxels are not supported (a real-valued scalar image is needed)"
    if header.datatype not in DATATYPES:
        return f"unknown NIfTI data type code {header.datatype}"
    spacing = header.spacing[: min(header.ndim, 3)]
    if not all(math.isfinite(v) and v != 0 for v in spacing):
        return f"invalid voxel spacing {tuple(spacing)} in the NIfTI header (must be finite and non-zero)"
    return None


def trailer_problem(path: Path, header: NiftiHeader) -> str | None:
    """Cheap truncation check without decoding: the uncompressed length that a gzip trailer records (or a plain
    file's length) against what the header needs; a problem in words, or None."""
    path = Path(path)
    expected = header.data_offset + header.data_bytes
    with open(path, "rb") as f:
        if f.read(2) == b"\x1f\x8b":
            f.seek(-4, os.SEEK_END)
            stored = struct.unpack("<I", f.read(4))[0]
            if stored != expected % 2**32:
                return (
                    f"truncated or corrupt file (the header needs {expected} bytes, its gzip trailer records {stored})"
                )
            return None
    stored = path.stat().st_size
    if stored < expected:
        return f"truncated or corrupt file (the header needs {expected} bytes, the file holds {stored})"
    return None


@dataclass
class DecodeResult:
    """The outcome of :func:`decode_fully`: a problem in words (or None), the uncompressed length, and for float
    data the flat mask of non-finite voxels (None when there is none, or when the data is not float)."""

    problem: str | None
    length: int
    non_finite: np.ndarray | None = None


def decode_fully(path: Path, header: NiftiHeader, find_non_finite: bool = False) -> DecodeResult:
    """Decode every byte of the file (gunzip with CRC check, concatenated members included) without keeping it.

    The file must hold at least header.data_offset + header.data_bytes bytes; with find_non_finite and float data,
    the non-finite voxels are located (a bool mask of header.voxels entries, file order). The header must have
    passed :func:`header_problem`. Raises OSError when the file cannot be read.
    """
    path = Path(path)
    need = header.data_offset + header.data_bytes
    dtype = header.dtype
    scan = find_non_finite and dtype.kind == "f"
    mask: np.ndarray | None = None
    pending = b""  # data bytes not yet scanned (a partial voxel)
    voxel = 0
    length = 0

    def take(chunk: bytes) -> None:
        nonlocal pending, voxel, mask, length
        start, length = length, length + len(chunk)
        if not scan or length <= header.data_offset or start >= need:
            return
        lo = max(header.data_offset - start, 0)
        hi = min(need - start, len(chunk))
        data = pending + chunk[lo:hi]
        whole = len(data) // dtype.itemsize * dtype.itemsize
        values = np.frombuffer(data[:whole], dtype=dtype)
        pending = data[whole:]
        bad = ~np.isfinite(values)
        if bad.any():
            if mask is None:
                mask = np.zeros(header.voxels, dtype=bool)
            mask[voxel : voxel + values.size] = bad
        voxel += values.size

    try:
        for chunk in _uncompressed_chunks(path):
            take(chunk)
    except zlib.error as exc:
        return DecodeResult(f"corrupt file (the gzip data breaks after {length} bytes: {exc})", length)
    except EOFError:
        return DecodeResult(
            f"truncated or corrupt file (the gzip stream ends early, after {length} of the {need} bytes the header "
            f"needs)",
            length,
        )
    if length < need:
        problem = f"truncated or corrupt file (the header needs {need} bytes, the data holds {length})"
        return DecodeResult(problem, length)
    return DecodeResult(None, length, mask)


def _uncompressed_chunks(path: Path) -> Iterator[bytes]:
    """The file's uncompressed bytes in chunks of at most _CHUNK: gunzipped (CRC and length checked by zlib,
    concatenated members followed) when it starts with the gzip magic, else as stored.

    Raises zlib.error for corrupt compressed data, EOFError when the gzip stream ends before its end marker.
    """
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            f.seek(0)
            yield from iter(lambda: f.read(_CHUNK), b"")
            return
        f.seek(0)
        inflate = zlib.decompressobj(wbits=31)
        compressed = f.read(_CHUNK)
        while True:
            # bounded output: a small file may inflate to gigabytes; flush() only returns what zlib still holds
            out = inflate.decompress(compressed, _CHUNK) if compressed else inflate.flush()
            if out:
                yield out
            if inflate.eof:
                compressed = inflate.unused_data or f.read(_CHUNK)
                if compressed[:2] != b"\x1f\x8b":
                    return  # the last member ended; trailing bytes that are not a member are ignored, as gzip does
                inflate = zlib.decompressobj(wbits=31)
            elif compressed:
                compressed = inflate.unconsumed_tail or f.read(_CHUNK)
            else:
                raise EOFError("the gzip stream ends before its end-of-stream marker")
