"""The outputs of a segmented case besides its label map, as predict's options ask for them, and where they go.

The output folder itself holds only ``<case>.nii.gz`` label maps (the FLARE contract), whatever is asked. Each
extra output has its own subfolder of it, made only when asked:

- ``--output-type dicom``: ``dicom/<case>.dcm``, a DICOM SEG referencing the source series (cases read from a
  DICOM series only; the label map is written as well, since resuming, evaluation and the summary rely on it);
- ``--per-organ``: ``per_organ/<case>/<organ>.nii.gz``, one binary mask per organ;
- ``--statistics``: ``statistics/<case>.json`` per case and ``statistics/statistics.csv`` across the cases;
- ``--preview``: ``preview/<case>.png``, axial, coronal and sagittal views through each organ.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.ct_io import CTVolume
from inference.inputs.cases import DICOM, InputCase
from inference.outputs.case_images import case_images
from inference.outputs.organ_masks import write_per_organ_masks
from inference.outputs.preview import preview_png
from inference.outputs.statistics import organ_statistics, write_statistics_csv, write_statistics_json

NIFTI, DICOM_SEG = "nifti", "dicom"
OUTPUT_TYPES = (NIFTI, DICOM_SEG)
DICOM_DIR, PER_ORGAN_DIR, STATISTICS_DIR, PREVIEW_DIR = "dicom", "per_organ", "statistics", "preview"
STATISTICS_CSV = "statistics.csv"


def no_dicom_seg_line(case: InputCase) -> str:
    """The warning of a case that gets no DICOM SEG because it was not read from a DICOM series."""
    return f"{case.path}: no DICOM SEG for {case.name} (a SEG references a DICOM series; this input is an image file)"


@dataclass(frozen=True)
class ExtraOutputs:
    """Which extra outputs each case gets (all off by default: the label maps only)."""

    output_type: str = NIFTI
    per_organ: bool = False
    statistics: bool = False
    preview: bool = False

    def any(self) -> bool:
        return self.output_type == DICOM_SEG or self.per_organ or self.statistics or self.preview

    def write(self, output_dir: Path, case: InputCase, volume: CTVolume, labels: np.ndarray) -> list[str]:
        """Write the extra outputs of one case into ``output_dir``'s subfolders (see the module's docstring).

        Args:
            case: the case as listed (its name, kind and, for a series, its slice files).
            volume: the case as read (CT in HU after the HU check, canonical (z, y, x), and the file's geometry).
            labels: the (z, y, x) uint8 label map in canonical orientation, the shape of ``volume.image``.
        Returns:
            warning lines (a DICOM SEG asked for a case that is not a DICOM series); OSError or ValueError when a
            file cannot be written.
        """
        if not self.any():
            return []
        image, label = case_images(labels, volume)
        warnings = []
        if self.output_type == DICOM_SEG:
            if case.kind == DICOM and case.series is not None:
                from inference.outputs.dicom_seg import write_dicom_seg  # highdicom: imported only when asked

                write_dicom_seg(label, case.series.files, output_dir / DICOM_DIR / f"{case.name}.dcm")
            else:
                warnings.append(no_dicom_seg_line(case))
        if self.per_organ:
            write_per_organ_masks(label, output_dir / PER_ORGAN_DIR, case.name)
        if self.statistics:
            write_statistics_json(organ_statistics(label, image), statistics_path(output_dir, case.name))
        if self.preview:
            (output_dir / PREVIEW_DIR).mkdir(parents=True, exist_ok=True)
            preview_png(image, label, output_dir / PREVIEW_DIR / f"{case.name}.png", title=case.name)
        return warnings

    def finish(self, output_dir: Path, names: Iterable[str]) -> Path | None:
        """After the cases: with --statistics, ``statistics/statistics.csv`` of every case of ``names`` whose JSON
        is there (those of this run, and those a resumed run kept), in the order given; the CSV's path or None."""
        if not self.statistics:
            return None
        found: dict[str, Mapping[str, dict]] = {}
        for name in names:
            path = statistics_path(output_dir, name)
            if path.is_file():
                found[name] = json.loads(path.read_text())
        return write_statistics_csv(found, output_dir / STATISTICS_DIR / STATISTICS_CSV)


def statistics_path(output_dir: Path, name: str) -> Path:
    """``output_dir/statistics/<name>.json``."""
    return Path(output_dir) / STATISTICS_DIR / f"{name}.json"
