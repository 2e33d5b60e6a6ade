"""Files written through a temporary file get the permissions of the process's umask (0644 under 0022), not
mkstemp's 0600: phantom data sets, their manifest, and training.data's atomic writer."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from niftiio.atomic_file import write_atomic
from niftiio.file_mode import apply_umask, current_umask
from phantom.generate import write_dataset


@pytest.fixture
def umask():
    """Set the umask for one test and restore it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_image_write_follows_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    path = tmp_path / "a.nii.gz"
    write_atomic(path, lambda tmp: sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4), np.uint8)), tmp))
    assert mode(path) == expected
    other = tmp_path / "b"
    other.write_bytes(b"")
    os.chmod(other, 0o600)
    apply_umask(other)
    assert mode(other) == expected


def test_phantom_files_are_0644_under_umask_0022(tmp_path, umask):
    umask(0o022)
    write_dataset(tmp_path / "ph", 1, seed=0, size_xy=32, slices=16, spacing=(10.0, 10.0, 8.0), mode="phantom")
    files = [p for p in (tmp_path / "ph").rglob("*") if p.is_file()]
    assert any(p.name.endswith("_0000.nii.gz") for p in files) and any(p.suffix == ".json" for p in files)
    assert {p.name: mode(p) for p in files} == {p.name: 0o644 for p in files}
