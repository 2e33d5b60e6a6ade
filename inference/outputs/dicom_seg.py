"""A label map as a DICOM Segmentation (SEG) object that references the DICOM series it was segmented from, as a
PACS takes it (written with highdicom).

One binary segment per organ (segment numbers 1-4 = the label ids; SNOMED CT codes of the organs; FLARE's label 2
is both kidneys), one frame per source slice that holds an organ, each frame referencing its source slice. Patient,
study and frame of reference are the source series'.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.sr.codedict import codes

from inference.outputs.files import write_bytes
from inference.task import ORGANS

ORGAN_CODES = {
    "liver": codes.SCT.Liver,
    "kidney": codes.SCT.Kidney,
    "spleen": codes.SCT.Spleen,
    "pancreas": codes.SCT.Pancreas,
}
SEG_SERIES_NUMBER = 300


def _software_version() -> str:
    try:
        return f"runet {metadata.version('runet')}"
    except metadata.PackageNotFoundError:
        return "runet"


def segment_descriptions() -> list[hd.seg.SegmentDescription]:
    """The four organs' segments, numbered by label id, as an automatic (AI) segmentation by RUnet."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name="RUnet", family=codes.cid7162.ArtificialIntelligence, version=_software_version()
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=value,
            segment_label=name,
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=ORGAN_CODES[name],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for value, name in ORGANS.items()
    ]


def _source_frames(label: sitk.Image, datasets: Sequence[pydicom.Dataset]) -> np.ndarray:
    """(slices, rows, columns) uint8: for each source slice, in the order given, the label map's slice at its
    position. ValueError (one line) when a slice does not lie on the label map's grid."""
    labels = sitk.GetArrayViewFromImage(label)  # (z, y, x): y = rows, x = columns
    frames = []
    for ds in datasets:
        position = tuple(float(v) for v in ds.ImagePositionPatient)
        index = label.TransformPhysicalPointToContinuousIndex(position)
        k = int(round(index[2]))
        if abs(index[0]) > 0.01 or abs(index[1]) > 0.01 or abs(index[2] - k) > 0.01 or not 0 <= k < labels.shape[0]:
            raise ValueError(
                f"source slice {ds.SOPInstanceUID} at {position} lies at voxel {tuple(round(i, 2) for i in index)} "
                "of the label map: not the series' grid"
            )
        if (int(ds.Rows), int(ds.Columns)) != labels.shape[1:]:
            raise ValueError(f"source slice {ds.SOPInstanceUID} is {ds.Rows} x {ds.Columns}, the label map's slices "
                             f"{labels.shape[1]} x {labels.shape[2]}")  # fmt: skip
        frames.append(labels[k])
    return np.ascontiguousarray(np.stack(frames), dtype=np.uint8)


def write_dicom_seg(label: sitk.Image, source_files: Sequence[Path], path: Path) -> Path:
    """Write ``label`` as a DICOM SEG object to ``path`` (whole: a temporary file and a rename).

    Args:
        label: integer label map (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas) on the grid the source
            series is read onto (as :func:`inference.inputs.dicom_series.read_series` reads it, in the file
            orientation: :func:`inference.outputs.case_images.case_images` gives it).
        source_files: the series' slice files (any order).
        path: the SEG file to write (``.dcm``).
    Raises:
        ValueError: labels outside 0-4, or slices that do not lie on the label map's grid.
    """
    datasets = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in source_files]
    frames = _source_frames(label, datasets)
    if frames.max(initial=0) > max(ORGANS):
        raise ValueError(f"label map holds label {int(frames.max())}; a SEG holds only the organs 1-{max(ORGANS)}")
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(),
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="RUnet",
        manufacturer_model_name="RUnet",
        software_versions=_software_version(),
        device_serial_number="none",
        series_description="RUnet organs",
    )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return write_bytes(buffer.getvalue(), Path(path))
