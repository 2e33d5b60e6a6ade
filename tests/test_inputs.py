"""Inputs beyond the FLARE folder (inference.inputs): listing the cases of a file or folder with the reason for
each skipped entry, other image formats and DICOM series read to the same array and geometry as the NIfTI, DICOM
geometry refused in one line, and the FLARE folder listed exactly as predict lists it."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_writer import write_dicom_series

from inference.ct_io import CTVolume, InputError, read_ct
from inference.inputs.cases import DICOM, FLARE, IMAGE, list_cases
from inference.inputs.dicom_series import find_series, read_series, slice_geometry_problem
from inference.inputs.hu_check import HU, NOT_HU, OFFSET, apply_intensity_check, check_intensities
from inference.inputs.read_case import read_case
from inference.task import shared_data_dir

DATA = shared_data_dir()
CASE = DATA / "TSEX_0002_0000.nii.gz"


@pytest.fixture(scope="module")
def nifti() -> CTVolume:
    return read_ct(CASE)


def assert_same_volume(got: CTVolume, expected: CTVolume) -> None:
    """Same voxels (value and dtype) in canonical orientation, same orientation, spacing and geometry (within the
    6 decimals DICOM stores)."""
    assert got.image.dtype == expected.image.dtype
    np.testing.assert_array_equal(got.image, expected.image)
    assert got.orientation == expected.orientation
    np.testing.assert_allclose(got.spacing_zyx, expected.spacing_zyx, atol=1e-6)
    for field in ("origin", "spacing", "direction"):
        np.testing.assert_allclose(getattr(got.geometry, field), getattr(expected.geometry, field), atol=1e-5)


def test_flare_folder_is_listed_as_before(tmp_path):
    """Every entry named <case>_0000.nii.gz is a case, whatever it is, in name order; every other entry skipped."""
    for name in ("b_0000.nii.gz", "a_0000.nii.gz", "a.nii.gz", "notes.txt", "c.mha"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "d_0000.nii.gz").mkdir()  # an entry of the FLARE name is a case even when it is not a file
    cases, skipped = list_cases(tmp_path)
    assert [c.path.name for c in cases] == ["a_0000.nii.gz", "b_0000.nii.gz", "d_0000.nii.gz"]
    assert [s.path.name for s in skipped] == ["a.nii.gz", "c.mha", "notes.txt", "sub"]
    assert [c.name for c in cases] == ["a", "b", "d"] and {c.kind for c in cases} == {FLARE}
    assert all("not a <case>_0000.nii.gz input" in s.line() for s in skipped)


def test_other_image_formats_read_as_the_nifti(tmp_path, nifti):
    image = sitk.ReadImage(str(CASE))
    for name in ("a.nii", "b.mha", "c.nrrd", "d_0000.nii"):
        sitk.WriteImage(image, str(tmp_path / name))
    shutil.copy(CASE, tmp_path / "ct.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    cases, skipped = list_cases(tmp_path)
    assert [(c.name, c.kind) for c in cases] == [(n, IMAGE) for n in ("a", "b", "c", "ct", "d")]
    for case in cases:
        assert_same_volume(read_case(case), nifti)
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons["empty"] == "a folder without DICOM series"
    assert reasons["notes.txt"].startswith("not an image read here (.txt;")
    single, none = list_cases(tmp_path / "b.mha")
    assert [(c.name, c.kind) for c in single] == [("b", IMAGE)] and none == []


def test_dicom_series_reads_as_the_nifti(tmp_path, nifti):
    files = write_dicom_series(sitk.ReadImage(str(CASE)), tmp_path / "patient1")
    cases, skipped = list_cases(tmp_path / "patient1")
    assert [(c.name, c.kind) for c in cases] == [("patient1", DICOM)] and skipped == []
    assert_same_volume(read_case(cases[0]), nifti)
    by_slice, _ = list_cases(files[3])  # one slice: its series
    assert [c.name for c in by_slice] == ["patient1"] and len(by_slice[0].series.files) == len(files)
    in_parent, _ = list_cases(tmp_path)  # a folder of series folders
    assert [(c.name, c.kind) for c in in_parent] == [("patient1", DICOM)]


def test_two_series_in_one_folder_are_two_cases(tmp_path, nifti):
    image = sitk.ReadImage(str(CASE))
    crop = image[:, :, 5:25]
    write_dicom_series(image, tmp_path / "study", series_number=3, prefix="s3_")
    write_dicom_series(crop, tmp_path / "study", series_number=7, description="crop", prefix="s7_")
    sitk.WriteImage(crop, str(tmp_path / "crop.nii.gz"))
    cases, skipped = list_cases(tmp_path / "study")
    assert [c.name for c in cases] == ["study_series3", "study_series7"] and skipped == []
    assert [len(c.series.files) for c in cases] == [30, 20] and cases[1].series.description == "crop"
    assert_same_volume(read_case(cases[0]), nifti)
    assert_same_volume(read_case(cases[1]), read_ct(tmp_path / "crop.nii.gz"))


def test_gantry_tilt_and_uneven_spacing_are_refused_in_one_line(tmp_path):
    image = sitk.ReadImage(str(CASE))
    write_dicom_series(image, tmp_path / "tilt", shift_per_slice_mm=0.8)
    with pytest.raises(InputError) as info:
        read_series(find_series(tmp_path / "tilt")[0])
    message = str(info.value)
    assert "\n" not in message and message.startswith(
        f"{tmp_path / 'tilt'} (DICOM series 1): gantry tilt of 14.9 degrees"
    )
    files = write_dicom_series(image, tmp_path / "gap")
    files[12].unlink()
    with pytest.raises(InputError, match=r"\(DICOM series 1\): uneven slice spacing: gaps of 3 to 6 mm") as info:
        read_series(find_series(tmp_path / "gap")[0])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "positions, problem",
    [
        ([[0, 0, 0], [0, 0, 2], [0, 0, 4]], None),
        ([[0, 0, 4], [0, 0, 0], [0, 0, 2]], None),  # any order
        ([[0, 0, 0]], "1 slice: a volume needs at least 2"),
        ([[0, 0, 0], [0, 0, 0], [0, 0, 2]], "two slices at one position"),
        ([[0, 0, 0], [0, 1, 2], [0, 2, 4]], "gantry tilt of 26.6 degrees"),
        ([[0, 0, 0], [0, 0, 2], [0, 0, 4], [0, 0, 8]], "uneven slice spacing: gaps of 2 to 4 mm"),
    ],
)
def test_slice_geometry(positions, problem):
    found = slice_geometry_problem(np.array(positions, float), np.array([1.0, 0, 0, 0, 1, 0]))
    assert found is None if problem is None else found.startswith(problem)


def test_what_is_not_an_input(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        list_cases(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"notes.txt: neither a 3D image \(.nii.gz, .nii, .mha"):
        list_cases(tmp_path / "notes.txt")
    assert list_cases(tmp_path) == ([], [list_cases(tmp_path)[1][0]])


def test_same_name_twice_keeps_the_first(tmp_path):
    image = sitk.ReadImage(str(CASE))
    sitk.WriteImage(image, str(tmp_path / "a.mha"))
    sitk.WriteImage(image, str(tmp_path / "a.nii"))
    cases, skipped = list_cases(tmp_path)
    assert [c.path.name for c in cases] == ["a.mha"]
    assert [s.line() for s in skipped] == [
        f"skipping {tmp_path / 'a.nii'}: its case name a is taken by {tmp_path / 'a.mha'}"
    ]


def write_offset_copy(path: Path) -> np.ndarray:
    """TSEX_0002 as an export without its rescale intercept: uint16, HU + 1024 (below -1024 HU clipped to 0).
    Returns the HU array that the copy holds (zyx, as the file's order)."""
    image = sitk.ReadImage(str(CASE))
    hu = sitk.GetArrayFromImage(image).astype(np.int32)
    stored = sitk.GetImageFromArray(np.clip(hu + 1024, 0, None).astype(np.uint16))
    stored.CopyInformation(image)
    sitk.WriteImage(stored, str(path))
    return np.maximum(hu, -1024)


def test_a_1024_offset_is_corrected_with_a_warning(tmp_path, nifti):
    path = tmp_path / "TSEX_0002_0000.nii.gz"
    write_offset_copy(path)
    stored = read_ct(path)
    assert stored.image.dtype == np.uint16
    volume, check = apply_intensity_check(stored, str(path))
    assert check.verdict == OFFSET and check.shift == -1024
    assert volume.image.dtype == np.int16
    np.testing.assert_array_equal(volume.image, np.maximum(nifti.image, -1024))
    assert volume.warnings[-1].startswith(f"{path}: intensities 0 to 2231 (uint16)")
    assert volume.warnings[-1].endswith("read as HU after subtracting 1024") and "\n" not in volume.warnings[-1]


@pytest.mark.parametrize("case", ["TSEX_0002", "TSDCM_0001", "DCMQI_0001", "FLARE22C_0044"])
def test_real_cases_are_hu(case):
    volume = read_ct(DATA / f"{case}_0000.nii.gz")
    assert check_intensities(volume.image).verdict == HU
    assert apply_intensity_check(volume, case)[0] is volume


def test_images_that_cannot_be_hu_get_a_warning_and_are_kept():
    crop = read_ct(DATA / "FLARE22C_0044_0000.nii.gz")  # a crop without air: +1024 leaves nothing near 0
    shifted = crop.image.astype(np.int32) + 1024
    check = check_intensities(shifted)
    assert check.verdict == NOT_HU and check.shift == 0
    assert "nothing below 0 (no air near -1000 HU, no fat)" in check.reason and "-161 to 805 HU" in check.reason
    normalized = np.linspace(-1, 1, 1000, dtype=np.float32).reshape(10, 10, 10)
    assert check_intensities(normalized).verdict == NOT_HU
    volume, check = apply_intensity_check(replace(crop, image=shifted), "x.nii.gz")
    assert volume.image is shifted and volume.warnings[-1].startswith("x.nii.gz: intensities 863 to 1829 (int32)")
