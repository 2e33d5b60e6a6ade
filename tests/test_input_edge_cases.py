"""Inputs the other tests do not reach: NIfTI-2 headers, non-finite float images, a write that fails half-way,
near-axis-aligned oblique directions, and checkpoints that are listed in SHA256SUMS but broken."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import inference.ct_io
from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_sha256sums
from inference.ct_io import InputError, Orientation, OutputError, read_ct, write_labels
from inference.model import RUNet, UNetConfig
from inference.preprocess import Normalization
from niftiio.nifti_file import header_problem, read_header


def nifti_header_problem(path: Path) -> str | None:
    """The problem the NIfTI header check finds in ``path``'s header, or None."""
    return header_problem(read_header(path))


def _ct(shape_zyx=(5, 6, 7), spacing=(0.8, 0.9, 2.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    arr = (np.arange(math.prod(shape_zyx)) % 1400 - 1000).astype(np.int16).reshape(shape_zyx)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(direction)
    return img


def nifti1_to_nifti2(nii1: bytes) -> bytes:
    """The same image with a NIfTI-2 header (540 bytes, 64-bit dims, double pixdim), from a little-endian
    uncompressed NIfTI-1 file: written field by field from the NIfTI-2 layout, independently of inference.ct_io."""
    h = nii1[:348]
    assert struct.unpack("<i", h[:4])[0] == 348
    dims = struct.unpack("<8h", h[40:56])
    datatype, bitpix = struct.unpack("<2h", h[70:74])
    pixdim = struct.unpack("<8f", h[76:108])
    vox_offset = int(struct.unpack("<f", h[108:112])[0])
    scl_slope, scl_inter = struct.unpack("<2f", h[112:120])
    qform_code, sform_code = struct.unpack("<2h", h[252:256])
    quatern = struct.unpack("<6f", h[256:280])
    srow = struct.unpack("<12f", h[280:328])
    xyzt_units = h[123]
    out = bytearray(540)
    struct.pack_into("<i", out, 0, 540)
    out[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into("<2h", out, 12, datatype, bitpix)
    struct.pack_into("<8q", out, 16, *dims)
    struct.pack_into("<8d", out, 104, *pixdim)
    struct.pack_into("<q", out, 168, 544)
    struct.pack_into("<2d", out, 176, scl_slope, scl_inter)
    struct.pack_into("<2i", out, 344, qform_code, sform_code)
    struct.pack_into("<6d", out, 352, *quatern)
    struct.pack_into("<12d", out, 400, *srow)
    struct.pack_into("<i", out, 500, xyzt_units)
    return bytes(out) + b"\0\0\0\0" + nii1[vox_offset:]


@pytest.fixture
def nifti2(tmp_path) -> Path:
    sitk.WriteImage(_ct(), str(tmp_path / "one.nii"))
    path = tmp_path / "two_0000.nii.gz"
    path.write_bytes(gzip.compress(nifti1_to_nifti2((tmp_path / "one.nii").read_bytes())))
    return path


def test_nifti2_header_checks(nifti2, tmp_path):
    # the raw-header check reads NIfTI-2's 64-bit dims and double pixdim (SimpleITK 2.5 does not open this file)
    assert nifti_header_problem(nifti2) is None
    raw = bytearray(gzip.decompress(nifti2.read_bytes()))
    assert len(raw) == 544 + 5 * 6 * 7 * 2
    zero = bytearray(raw)
    struct.pack_into("<d", zero, 104 + 8 * 2, 0.0)  # pixdim[2]: the y spacing
    (tmp_path / "zero_0000.nii.gz").write_bytes(gzip.compress(bytes(zero)))
    assert nifti_header_problem(tmp_path / "zero_0000.nii.gz").startswith(
        "invalid voxel spacing (0.800000011920929, 0.0, 2.5)"
    )
    with pytest.raises(InputError, match="invalid voxel spacing"):
        read_ct(tmp_path / "zero_0000.nii.gz")
    (tmp_path / "cut_0000.nii.gz").write_bytes(gzip.compress(bytes(raw[:-20])))
    with pytest.raises(InputError, match=f"truncated or corrupt file \\(the header needs {len(raw)} bytes, its gzip"):
        read_ct(tmp_path / "cut_0000.nii.gz")
    nan = bytearray(raw)
    struct.pack_into("<d", nan, 104 + 8 * 3, float("nan"))  # pixdim[3]: the z spacing
    (tmp_path / "nan_0000.nii.gz").write_bytes(gzip.compress(bytes(nan)))
    assert "invalid voxel spacing (0.800000011920929, 0.8999999761581421, nan)" in nifti_header_problem(
        tmp_path / "nan_0000.nii.gz"
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_float_voxels_are_read_as_air_with_a_warning(bad, tmp_path):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[2, 3, 4] = bad
    # MetaImage keeps the value (ITK's NIfTI reader does not hand NaN back)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "f.mha"))
    volume = read_ct(tmp_path / "f.mha")
    assert volume.image[2, 3, 4] == -1000.0 and np.count_nonzero(volume.image == -1000.0) == 1
    assert volume.warnings == (f"{tmp_path / 'f.mha'}: 1 of 120 voxels are NaN or Inf; read as air (-1000 HU)",)
    arr[:] = bad
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "all.mha"))
    with pytest.raises(InputError, match="all.mha"):
        read_ct(tmp_path / "all.mha")
    arr[:] = 0.0
    arr[2, 3, 4] = 5.5  # a finite float image is read as it is
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(tmp_path / "g.mha"))
    assert read_ct(tmp_path / "g.mha").image[2, 3, 4] == 5.5


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    sitk.WriteImage(_ct(), str(tmp_path / "case_0000.nii.gz"))
    vol = read_ct(tmp_path / "case_0000.nii.gz")
    out = tmp_path / "out"
    out.mkdir()

    def half_write(image, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full (test)")

    monkeypatch.setattr(inference.ct_io.sitk, "WriteImage", half_write)
    with pytest.raises(OutputError, match=r"case\.nii\.gz: cannot write the label map \(disk full \(test\)\)"):
        write_labels(out / "case.nii.gz", np.zeros(vol.image.shape, np.uint8), vol)
    assert list(out.iterdir()) == []


def _rotation_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@pytest.mark.parametrize(
    "axes", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.array([[0, 1.0, 0], [0, 0, -1.0], [1.0, 0, 0]])]
)
@pytest.mark.parametrize("deg", [-4.0, 3.0])
def test_near_axis_aligned_oblique_directions_take_the_nearest_axes(axes, deg, tmp_path):
    oblique = _rotation_z(deg) @ axes
    straight = _ct(direction=tuple(axes.ravel()))
    tilted = _ct(direction=tuple(oblique.ravel()))
    sitk.WriteImage(straight, str(tmp_path / "s_0000.nii.gz"))
    sitk.WriteImage(tilted, str(tmp_path / "t_0000.nii.gz"))
    a, b = read_ct(tmp_path / "s_0000.nii.gz"), read_ct(tmp_path / "t_0000.nii.gz")
    assert b.orientation == a.orientation == Orientation.from_direction(tuple(axes.ravel()))
    np.testing.assert_array_equal(b.image, a.image)
    assert b.spacing_zyx == pytest.approx(a.spacing_zyx)
    labels = (b.image % 5).astype(np.uint8)
    write_labels(tmp_path / "t.nii.gz", labels, b)
    out = sitk.ReadImage(str(tmp_path / "t.nii.gz"))
    written = sitk.ReadImage(str(tmp_path / "t_0000.nii.gz"))
    assert out.GetDirection() == pytest.approx(written.GetDirection(), abs=1e-6)
    assert out.GetOrigin() == pytest.approx(written.GetOrigin(), abs=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(written) % 5)


def test_listed_but_corrupt_checkpoint_is_a_checkpoint_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    write_sha256sums(tmp_path)  # the checksum matches: the file itself is broken
    with pytest.raises(CheckpointError, match=r"bad\.pt: cannot load checkpoint \("):
        load_checkpoint(tmp_path / "bad.pt")


def test_weights_that_do_not_fit_the_saved_config(tmp_path):
    model = RUNet(UNetConfig(widths=(2, 4)))
    save_checkpoint(tmp_path / "m.pt", model, Normalization())
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["config"]["widths"] = [2, 8]  # the saved tensors are of widths (2, 4)
    torch.save(payload, tmp_path / "m.pt")
    write_sha256sums(tmp_path)
    with pytest.raises(
        CheckpointError, match=r"m\.pt: malformed RUnet checkpoint \(weights do not fit the saved config"
    ):
        load_checkpoint(tmp_path / "m.pt")
