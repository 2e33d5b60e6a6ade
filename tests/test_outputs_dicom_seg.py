"""DICOM SEG output (inference.outputs.dicom_seg): a real case's label map written for its DICOM series, read back
with highdicom and pydicom, and compared voxel for voxel; the references to the source series; refusals."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_writer import write_dicom_series

hd = pytest.importorskip("highdicom")

from inference.inputs.cases import list_cases  # noqa: E402
from inference.inputs.read_case import read_case  # noqa: E402
from inference.outputs.case_images import case_images  # noqa: E402
from inference.outputs.dicom_seg import write_dicom_seg  # noqa: E402
from inference.task import shared_data_dir  # noqa: E402

DATA = shared_data_dir()


@pytest.fixture
def series(tmp_path):
    """TSEX_0002 as a DICOM series, read as the pipeline reads it: (case, volume, label map zyx in file order)."""
    write_dicom_series(sitk.ReadImage(str(DATA / "TSEX_0002_0000.nii.gz")), tmp_path / "TSEX_0002")
    (case,), _ = list_cases(tmp_path / "TSEX_0002")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "TSEX_0002.nii.gz")))
    return case, read_case(case), labels


def read_back(path, files) -> np.ndarray:
    """The SEG's label map at each source slice, in the order of ``files``: (slices, rows, columns)."""
    seg = hd.seg.segread(str(path))
    uids = [pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID for f in files]
    return seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)


def test_seg_read_back_equals_the_label_map(series, tmp_path):
    case, volume, labels = series
    _, label_image = case_images(volume.orientation.to_canonical(labels), volume)  # as the pipeline holds it
    files = sorted(case.series.files)  # IM0000 ... : slice k of the image
    path = write_dicom_seg(label_image, list(reversed(files)), tmp_path / "out" / "TSEX_0002.dcm")
    np.testing.assert_array_equal(read_back(path, files), labels)
    seg = hd.seg.segread(str(path))
    assert [(s.SegmentNumber, s.SegmentLabel) for s in seg.SegmentSequence] == [
        (1, "liver"),
        (2, "kidney"),
        (3, "spleen"),
        (4, "pancreas"),
    ]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Liver"
    source = pydicom.dcmread(str(files[0]), stop_before_pixels=True)
    raw = pydicom.dcmread(str(path))
    assert raw.Modality == "SEG" and raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert (raw.PatientID, raw.StudyInstanceUID, raw.FrameOfReferenceUID) == (
        source.PatientID,
        source.StudyInstanceUID,
        source.FrameOfReferenceUID,
    )
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert raw.SeriesInstanceUID != source.SeriesInstanceUID


def test_absent_organ_and_wrong_grid(series, tmp_path):
    case, volume, labels = series
    labels = np.where(labels == 2, 0, labels).astype(np.uint8)  # no kidney
    _, label_image = case_images(volume.orientation.to_canonical(labels), volume)
    files = sorted(case.series.files)
    path = write_dicom_seg(label_image, files, tmp_path / "nokidney.dcm")
    back = read_back(path, files)
    np.testing.assert_array_equal(back, labels)
    assert not (back == 2).any()
    shifted = sitk.Image(label_image)
    shifted.SetOrigin(tuple(o + 1.5 for o in label_image.GetOrigin()))
    with pytest.raises(ValueError, match="not the series' grid"):
        write_dicom_seg(shifted, files, tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()
