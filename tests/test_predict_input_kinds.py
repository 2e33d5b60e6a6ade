"""The segmentation command end to end on every input kind and with every extra output: each kind gives the label
map of the FLARE NIfTI run; the DICOM SEG reads back voxel for voxel; statistics, masks and preview are written
into their subfolders; an image stored with +1024 is warned about and segmented as the HU image."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import write_dicom_series

from inference.task import ORGANS, shared_data_dir

hd = pytest.importorskip("highdicom")

REPO = Path(__file__).resolve().parents[1]
CASE = shared_data_dir() / "TSEX_0002_0000.nii.gz"


def predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "inference.predict", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def labels_of(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> np.ndarray:
    """The label map (zyx, file order) of TSEX_0002 from a FLARE folder of its NIfTI file."""
    root = tmp_path_factory.mktemp("reference")
    (root / "in").mkdir()
    (root / "in" / CASE.name).symlink_to(CASE)
    result = predict("-i", str(root / "in"), "-o", str(root / "out"))
    assert result.returncode == 0, result.stderr
    labels = labels_of(root / "out" / "TSEX_0002.nii.gz")
    assert set(np.unique(labels)) >= {0, 1, 2}  # a real segmentation to compare against
    return labels


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A folder of every input kind (.nii, .mha, a DICOM series, two series in one folder, a copy clipped at
    -1024 HU and the same stored as uint16 +1024, a text file) segmented with every extra output: (input folder,
    output folder, the run)."""
    root = tmp_path_factory.mktemp("mixed")
    inputs = root / "in"
    inputs.mkdir()
    image = sitk.ReadImage(str(CASE))
    sitk.WriteImage(image, str(inputs / "plain.nii"))
    sitk.WriteImage(image, str(inputs / "scan.mha"))
    write_dicom_series(image, inputs / "patient")
    write_dicom_series(image, inputs / "study", series_number=3, prefix="s3_")
    write_dicom_series(image, inputs / "study", series_number=7, prefix="s7_")
    hu = np.maximum(sitk.GetArrayFromImage(image), -1024)  # what a uint16 +1024 export can hold
    for name, array in (("clipped.nii.gz", hu.astype(np.int16)), ("offset.nii.gz", (hu + 1024).astype(np.uint16))):
        stored = sitk.GetImageFromArray(array)
        stored.CopyInformation(image)
        sitk.WriteImage(stored, str(inputs / name))
    (inputs / "notes.txt").write_text("not an image\n")
    out = root / "out"
    result = predict(
        "-i", str(inputs), "-o", str(out), "-v", "--output-type", "dicom", "--per-organ", "--statistics", "--preview"
    )  # fmt: skip
    return inputs, out, result


CASES = ("clipped", "offset", "patient", "plain", "scan", "study_series3", "study_series7")


def test_every_input_kind_gives_the_nifti_labels(mixed, reference):
    _, out, result = mixed
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [f"{c}.nii.gz" for c in CASES]
    for case in ("patient", "plain", "scan", "study_series3", "study_series7"):
        np.testing.assert_array_equal(labels_of(out / f"{case}.nii.gz"), reference, err_msg=case)
    np.testing.assert_array_equal(labels_of(out / "offset.nii.gz"), labels_of(out / "clipped.nii.gz"))


def test_skipped_files_say_why_and_the_offset_is_warned(mixed):
    inputs, _, result = mixed
    assert f"skipping {inputs / 'notes.txt'}: not an image read here (.txt;" in result.stderr
    warning = [line for line in result.stderr.splitlines() if "offset.nii.gz: intensities" in line]
    assert len(warning) == 1 and warning[0].startswith(f"warning: {inputs / 'offset.nii.gz'}: intensities 0 to ")
    assert warning[0].endswith("read as HU after subtracting 1024")
    assert "warning: " + str(inputs / "plain.nii") + ": no DICOM SEG for plain" in result.stderr


def test_dicom_seg_reads_back_voxel_for_voxel(mixed, reference):
    inputs, out, _ = mixed
    assert sorted(p.name for p in (out / "dicom").iterdir()) == [f"{c}.dcm" for c in ("patient", "study_series3",
                                                                                      "study_series7")]  # fmt: skip
    files = sorted((inputs / "patient").iterdir())  # IM0000 ...: slice k of the image
    seg = hd.seg.segread(str(out / "dicom" / "patient.dcm"))
    uids = [pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID for f in files]
    read_back = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    np.testing.assert_array_equal(read_back, reference)
    source = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID


def test_statistics_masks_and_preview(mixed, reference):
    _, out, _ = mixed
    stats = json.loads((out / "statistics" / "patient.json").read_text())
    spacing = sitk.ReadImage(str(CASE)).GetSpacing()
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(CASE)))
    for value, organ in ORGANS.items():
        voxels = int(np.count_nonzero(reference == value))
        assert stats[organ]["voxels"] == voxels
        assert stats[organ]["volume_ml"] == pytest.approx(voxels * np.prod(spacing) / 1000)
        if voxels:
            assert stats[organ]["hu_mean"] == pytest.approx(float(hu[reference == value].mean()))
        mask = labels_of(out / "per_organ" / "patient" / f"{organ}.nii.gz")
        np.testing.assert_array_equal(mask, (reference == value).astype(np.uint8))
    with open(out / "statistics" / "statistics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [c for c in CASES for _ in ORGANS]
    assert all((out / "preview" / f"{c}.png").stat().st_size > 10_000 for c in CASES)


def test_a_single_file_is_one_case(reference, tmp_path):
    result = predict("-i", str(CASE), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["TSEX_0002.nii.gz"]
    np.testing.assert_array_equal(labels_of(tmp_path / "out" / "TSEX_0002.nii.gz"), reference)
