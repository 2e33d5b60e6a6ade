"""The label maps of the real cases in ../shared/data are pinned: the CLI with the shipped weights, the torch backend
and float32 arithmetic writes a map of this size with these voxel counts per label, so that a change meant to keep
behaviour (a refactor of the planner, the engine or the writer) is checked on real scans. The counts allow
TOLERANCE (float32 convolutions may round differently on another CPU and flip a few voxels where two classes tie);
a planning, orientation or post-processing mistake moves thousands.

When the weights or the method change on purpose, re-run the CLI with these options and update PINNED with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.checkpoint import DEFAULT_WEIGHTS
from inference.predict import main as predict

OPTIONS = ("--backend", "torch", "--precision", "float32", "--device", "cpu")
PINNED = {
    # case: (size xyz, voxels per label written, background left out)
    "FLARE22C_0044": ((64, 64, 11), {}),
    "TSEX_0002": ((122, 101, 30), {1: 41981, 2: 7349, 3: 8518, 4: 2248}),
    "DCMQI_0001": ((512, 512, 3), {1: 53740, 4: 6}),
    "TSDCM_0001": ((512, 512, 20), {1: 388221, 2: 1618, 3: 140018, 4: 14839}),
}
TOLERANCE = (3, 0.002)  # voxels, fraction: a count may differ by the larger of the two
SLOW = {"DCMQI_0001", "TSDCM_0001"}  # 512 x 512 in-plane: several seconds each on a 2-core CPU


def label_counts(path: Path) -> tuple[tuple[int, ...], dict[int, int]]:
    """(size xyz, {label: voxels} without the background) of a written label map; the voxels must be uint8."""
    image = sitk.ReadImage(str(path))
    voxels = sitk.GetArrayFromImage(image)
    assert voxels.dtype.name == "uint8"
    labels, counts = np.unique(voxels, return_counts=True)
    return image.GetSize(), {int(k): int(n) for k, n in zip(labels, counts) if k}


def within_tolerance(got: dict[int, int], pinned: dict[int, int]) -> bool:
    """Every label's count within TOLERANCE of the pinned one (a missing label counts 0)."""
    slack, fraction = TOLERANCE
    return all(abs(got.get(k, 0) - pinned.get(k, 0)) <= max(slack, fraction * pinned.get(k, 0)) for k in got | pinned)


def test_tolerance_allows_rounding_flips_and_catches_real_changes():
    pinned = {1: 50000, 4: 6}
    assert within_tolerance({1: 50090, 4: 8}, pinned)
    assert not within_tolerance({1: 50200, 4: 6}, pinned)
    assert not within_tolerance({1: 50000}, {1: 50000, 4: 60})
    assert not within_tolerance({1: 50000, 2: 40}, pinned)


@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in PINNED])
def test_real_case_label_map_is_the_pinned_one(case, shared_data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / f"{case}_0000.nii.gz").symlink_to(shared_data / f"{case}_0000.nii.gz")
    args = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(DEFAULT_WEIGHTS), *OPTIONS]
    assert predict(args) == 0
    size, counts = label_counts(tmp_path / "out" / f"{case}.nii.gz")
    pinned_size, pinned_counts = PINNED[case]
    assert size == pinned_size
    assert within_tolerance(counts, pinned_counts), f"{case}: {counts}, pinned {pinned_counts}"
