"""The label maps of the real cases in ../shared/data are pinned: the CLI with the shipped weights, the torch backend
and float32 arithmetic writes exactly these voxels (sha256 of the uint8 zyx array as written), so that a change meant
to keep behaviour (a refactor of the planner, the engine or the writer) is checked voxel for voxel.

When the weights or the method change on purpose, re-run the CLI with these options and update PINNED with them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import SimpleITK as sitk

from inference.checkpoint import DEFAULT_WEIGHTS
from inference.predict import main as predict

OPTIONS = ("--backend", "torch", "--precision", "float32", "--device", "cpu")
PINNED = {
    # case: (size xyz, sha256 of the label voxels, uint8 zyx)
    "FLARE22C_0044": ((64, 64, 11), "61d9e6520ef1b93e440f9c235baca40cac8a44cd938a93019acb62f220d02cb9"),
    "TSEX_0002": ((122, 101, 30), "594214bc813f6b11d6417c90249b2ac2001258a752564c202e0ae9ee2227577c"),
    "DCMQI_0001": ((512, 512, 3), "b9f674dc0923d76b3f4a55ff09b5f761b0384a77a6a8aa10a99f930f16cbe0c2"),
    "TSDCM_0001": ((512, 512, 20), "3d469aa4014403869cd27323c0ba3a09832279349a5ce13bdcfbb4e34371ab7b"),
}
SLOW = {"DCMQI_0001", "TSDCM_0001"}  # 512 x 512 in-plane: several seconds each on a 2-core CPU


def label_digest(path: Path) -> tuple[tuple[int, ...], str]:
    """(size xyz, sha256 of the voxels) of a written label map; the voxels must be uint8."""
    image = sitk.ReadImage(str(path))
    voxels = sitk.GetArrayFromImage(image)
    assert voxels.dtype.name == "uint8"
    return image.GetSize(), hashlib.sha256(voxels.tobytes()).hexdigest()


@pytest.mark.parametrize("case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in PINNED])
def test_real_case_label_map_is_the_pinned_one(case, shared_data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / f"{case}_0000.nii.gz").symlink_to(shared_data / f"{case}_0000.nii.gz")
    args = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(DEFAULT_WEIGHTS), *OPTIONS]
    assert predict(args) == 0
    assert label_digest(tmp_path / "out" / f"{case}.nii.gz") == PINNED[case]
