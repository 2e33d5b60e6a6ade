"""One case of a run read and checked: read as its kind asks, then the HU check applied, as the runner and the
Python API read every case."""

from __future__ import annotations

from pathlib import Path

from inference.ct_io import INPUT_SUFFIX, CTVolume, case_name
from inference.inputs.cases import DICOM, FLARE, IMAGE, InputCase, image_case_name
from inference.inputs.hu_check import apply_intensity_check
from inference.inputs.read_case import read_case


def as_input_case(case: Path | InputCase) -> InputCase:
    """``case`` as an InputCase: a plain path is an image file, a ``<case>_0000.nii.gz`` one named as the FLARE
    folder names it (and read as before), any other named after the file (``ct.mha`` -> ``ct``)."""
    if isinstance(case, InputCase):
        return case
    path = Path(case)
    if path.name.endswith(INPUT_SUFFIX) and len(path.name) > len(INPUT_SUFFIX):
        return InputCase(case_name(path), FLARE, path)
    return InputCase(image_case_name(path.name), IMAGE, path)


def case_source(case: InputCase) -> str:
    """How messages name the case: its file, or ``<folder> (DICOM series <number>)``."""
    return case.series.describe() if case.kind == DICOM and case.series is not None else str(case.path)


def case_files(case: InputCase) -> list[Path]:
    """The files the case is read from: its file, or the slices of its series."""
    return list(case.series.files) if case.kind == DICOM and case.series is not None else [case.path]


def read_checked(case: InputCase) -> CTVolume:
    """Read ``case`` (:func:`inference.inputs.read_case.read_case`) and apply the HU check
    (:func:`inference.inputs.hu_check.apply_intensity_check`): an image stored with +1024 comes back shifted to HU,
    and a warning naming the case joins ``volume.warnings`` for an image that is not CT in HU (a volume in HU is
    returned as read). Raises InputError (one line naming the file or series)."""
    volume, _ = apply_intensity_check(read_case(case), case_source(case))
    return volume
