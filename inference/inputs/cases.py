"""The cases of an input, and why each other entry of it is skipped.

An input is one of:

- a folder that holds at least one ``<case>_0000.nii.gz`` entry (the FLARE layout): exactly those entries are the
  cases, whatever they are (one that is not a readable file fails when read, with the reason), in name order;
  every other entry is skipped. This is the contract of the FLARE container and does not change;
- any other folder: each 3D image file SimpleITK reads (:data:`IMAGE_SUFFIXES`) is a case named after the file
  (``ct.mha`` -> ``ct``; a ``_0000`` channel suffix is dropped too); the DICOM series whose slices lie directly in
  the folder, and those of each subfolder, are one case each (see
  :func:`inference.inputs.dicom_series.series_case_names`); everything else is skipped;
- a single image file (the case is named after it), or a single DICOM slice (the case is its series, in its
  folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inference.ct_io import InputError, case_name
from inference.inputs.dicom_series import DicomSeries, find_series, is_dicom_file, series_case_names
from inference.task import INPUT_SUFFIX

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
"""File names of the 3D images read as cases, besides DICOM (matched case-insensitively)."""
CHANNEL_SUFFIX = INPUT_SUFFIX.removesuffix(".nii.gz")
FLARE, IMAGE, DICOM = "flare", "image", "dicom"


@dataclass(frozen=True)
class InputCase:
    """One case of an input: its name (the output is ``<name>.nii.gz``), its kind (:data:`FLARE`: a
    ``<case>_0000.nii.gz`` entry; :data:`IMAGE`: another image file; :data:`DICOM`: a series) and where it is read
    from (``path``: the file, or for a series its folder; ``series``: the series)."""

    name: str
    kind: str
    path: Path
    series: DicomSeries | None = None


@dataclass(frozen=True)
class Skipped:
    """An entry of the input that is not a case, and why, in words."""

    path: Path
    reason: str

    def line(self) -> str:
        return f"skipping {self.path}: {self.reason}"


def image_suffix(name: str) -> str | None:
    """The suffix of :data:`IMAGE_SUFFIXES` that ends ``name`` (case-insensitive), or None."""
    lower = name.lower()
    return next((s for s in IMAGE_SUFFIXES if lower.endswith(s) and len(name) > len(s)), None)


def image_case_name(name: str) -> str:
    """``ct.nii`` -> ``ct``, ``scan_0000.mha`` -> ``scan``: the file name without its image suffix and without a
    ``_0000`` channel suffix (unless nothing would be left)."""
    stem = name[: -len(image_suffix(name) or "")] if image_suffix(name) else name
    base = stem.removesuffix(CHANNEL_SUFFIX)
    return base or stem


def list_cases(source: Path) -> tuple[list[InputCase], list[Skipped]]:
    """The cases of ``source`` (a folder or one file; see the module's docstring) in name order, and the entries
    skipped, each with its reason.

    Raises:
        InputError: one line: ``source`` does not exist, cannot be listed, or is a file that is neither an image
            nor a DICOM slice.
    """
    source = Path(source)
    if source.is_dir():
        try:
            entries = sorted(source.iterdir())
        except OSError as exc:
            raise InputError(f"{source}: cannot list the input folder ({exc.strerror or exc})") from None
        if any(e.name.endswith(INPUT_SUFFIX) and len(e.name) > len(INPUT_SUFFIX) for e in entries):
            return _flare_cases(entries)
        return _folder_cases(source, entries)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder")
    if image_suffix(source.name):
        name = case_name(source) if source.name.endswith(INPUT_SUFFIX) else image_case_name(source.name)
        return [InputCase(name, FLARE if source.name.endswith(INPUT_SUFFIX) else IMAGE, source)], []
    if is_dicom_file(source):
        series = [s for s in find_series(source.parent) if source in s.files or source.resolve() in s.files]
        if series:
            return [InputCase(series_case_names(source.parent.name, series)[0], DICOM, source.parent, series[0])], []
    raise InputError(f"{source}: neither a 3D image ({', '.join(IMAGE_SUFFIXES)}) nor a DICOM slice")


def _flare_cases(entries: list[Path]) -> tuple[list[InputCase], list[Skipped]]:
    """A FLARE folder: the ``<case>_0000.nii.gz`` entries are the cases (as ever); the others are skipped."""
    cases, skipped = [], []
    for entry in entries:
        if entry.name.endswith(INPUT_SUFFIX) and len(entry.name) > len(INPUT_SUFFIX):
            cases.append(InputCase(case_name(entry), FLARE, entry))
        else:
            skipped.append(Skipped(entry, f"not a <case>{INPUT_SUFFIX} input (the folder holds such inputs, and "
                                          "then only they are read)"))  # fmt: skip
    return cases, skipped


def _folder_cases(folder: Path, entries: list[Path]) -> tuple[list[InputCase], list[Skipped]]:
    """Any other folder: image files, the DICOM series of the folder and of each subfolder."""
    cases: list[InputCase] = []
    skipped: list[Skipped] = []
    dicom_here = False
    for entry in entries:
        if entry.name.startswith("."):
            skipped.append(Skipped(entry, "a hidden entry"))
        elif entry.is_dir():
            found = _series_cases(entry)
            cases += found
            if not found:
                skipped.append(Skipped(entry, "a folder without DICOM series"))
        elif image_suffix(entry.name):
            cases.append(InputCase(image_case_name(entry.name), IMAGE, entry))
        elif is_dicom_file(entry):
            dicom_here = True
        else:
            skipped.append(Skipped(entry, _not_an_image(entry)))
    if dicom_here:
        found = _series_cases(folder)
        cases += found
        if not found:
            skipped.append(Skipped(folder, "its DICOM files hold no image series GDCM reads"))
    return _unique(sorted(cases, key=lambda c: c.name), skipped)


def _series_cases(folder: Path) -> list[InputCase]:
    series = find_series(folder)
    names = series_case_names(folder.name, series)
    return [InputCase(n, DICOM, folder, s) for n, s in zip(names, series)]


def _not_an_image(entry: Path) -> str:
    if not entry.is_file():
        return "not a regular file"
    suffix = "".join(entry.suffixes[-2:]) if entry.suffixes else "no extension"
    return f"not an image read here ({suffix}; images: {', '.join(IMAGE_SUFFIXES)}, or DICOM)"


def _unique(cases: list[InputCase], skipped: list[Skipped]) -> tuple[list[InputCase], list[Skipped]]:
    """Keep the first case of each name; the others are skipped, naming the case that holds the name."""
    kept: dict[str, InputCase] = {}
    for case in cases:
        if case.name in kept:
            where = kept[case.name].series.describe() if kept[case.name].series else kept[case.name].path
            skipped.append(Skipped(case.path, f"its case name {case.name} is taken by {where}"))
        else:
            kept[case.name] = case
    return list(kept.values()), sorted(skipped, key=lambda s: os.fspath(s.path))
