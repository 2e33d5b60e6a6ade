"""Writing a 3D SimpleITK image as a CT DICOM series, one file per slice, as a scanner's export lays it out (the
tests' source of DICOM input)."""

from __future__ import annotations

from pathlib import Path

import pydicom.uid
import SimpleITK as sitk

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom_series(
    image: sitk.Image,
    folder: Path,
    series_number: int = 1,
    description: str = "abdomen",
    study_uid: str | None = None,
    prefix: str = "",
    shift_per_slice_mm: float = 0.0,
) -> list[Path]:
    """Write ``image`` (int16 HU) as slices ``<prefix>IM<k>.dcm`` in ``folder`` (created): a new series UID and,
    unless given, study UID; ``shift_per_slice_mm`` moves slice k by k x that along x within its plane (a gantry
    tilt). Returns the files in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or pydicom.uid.generate_uid()
    series_uid, frame_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    common = {
        "0008|0016": CT_IMAGE_STORAGE,
        "0008|0060": "CT",
        "0008|0020": "20240101",
        "0008|0030": "120000",
        "0008|0050": "A1",
        "0008|0090": "",
        "0010|0010": "Test^Patient",
        "0010|0020": "P1",
        "0010|0030": "19700101",
        "0010|0040": "O",
        "0020|000d": study_uid,
        "0020|000e": series_uid,
        "0020|0010": "1",
        "0020|0011": str(series_number),
        "0020|0052": frame_uid,
        "0008|103e": description,
        "0020|0037": orientation,
        "0018|0050": f"{image.GetSpacing()[2]:.6f}",
        "0028|1052": "0",
        "0028|1053": "1",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for k in range(image.GetDepth()):
        piece = image[:, :, k]
        for key, value in common.items():
            piece.SetMetaData(key, value)
        x, y, z = image.TransformIndexToPhysicalPoint((0, 0, k))
        piece.SetMetaData("0020|0032", f"{x + k * shift_per_slice_mm:.6f}\\{y:.6f}\\{z:.6f}")
        piece.SetMetaData("0020|0013", str(k + 1))
        piece.SetMetaData("0008|0018", pydicom.uid.generate_uid())
        path = folder / f"{prefix}IM{k:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(piece)
        files.append(path)
    return files
