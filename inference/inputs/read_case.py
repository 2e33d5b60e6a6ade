"""One case of an input, whatever its kind, as a CT volume in canonical orientation."""

from __future__ import annotations

from inference.ct_io import CTVolume, read_ct
from inference.inputs.cases import DICOM, InputCase
from inference.inputs.dicom_series import read_series


def read_case(case: InputCase) -> CTVolume:
    """Read ``case`` (from :func:`inference.inputs.cases.list_cases`): a FLARE or other image file with
    :func:`inference.ct_io.read_ct` (byte for byte what the FLARE folder gets), a DICOM series with
    :func:`inference.inputs.dicom_series.read_series`. Raises InputError (one line naming the file or series)."""
    if case.kind == DICOM:
        return read_series(case.series)
    return read_ct(case.path)
