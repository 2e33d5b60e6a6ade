"""FLARE-layout reading, the checks on broken pairs, the memory-mapped cache and the split."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from inference.ct_io import read_ct
from training.data import DataError, cache_case, check_pairs, find_pairs, load_dataset, split_cases


def _write(path, array, spacing=(1.0, 1.0, 2.0), direction=None, origin=(0.0, 0.0, 0.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), True)


def _case(folder, name, shape=(6, 8, 10), layout=("imagesTr", "labelsTr"), **kw):
    rng = np.random.default_rng(len(name))
    image = rng.integers(-1000, 1000, shape).astype(np.int16)
    label = rng.integers(0, 5, shape).astype(np.uint8)
    _write(folder / layout[0] / f"{name}_0000.nii.gz", image, **kw)
    _write(folder / layout[1] / f"{name}.nii.gz", label, **kw)
    return image, label


@pytest.mark.parametrize("layout", [("imagesTr", "labelsTr"), ("TrainingImg", "TrainingMask"), ("", "")])
def test_find_pairs_in_every_layout(tmp_path, layout):
    for name in ("B_0000", "A"):  # a case name ending in _0000 must not be mistaken for an image
        _case(tmp_path, name, layout=layout)
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["A", "B_0000"]
    assert pairs[1].image.name == "B_0000_0000.nii.gz" and pairs[1].label.name == "B_0000.nii.gz"


def test_broken_pairs_are_all_named_before_training(tmp_path):
    _case(tmp_path, "good")
    _case(tmp_path, "grid")
    _write(tmp_path / "labelsTr" / "grid.nii.gz", np.zeros((6, 8, 9), np.uint8))  # other size
    _case(tmp_path, "spacing")
    _write(tmp_path / "labelsTr" / "spacing.nii.gz", np.zeros((6, 8, 10), np.uint8), spacing=(1.0, 1.0, 3.0))
    _case(tmp_path, "values")
    _write(tmp_path / "labelsTr" / "values.nii.gz", np.full((6, 8, 10), 7, np.uint8))
    _case(tmp_path, "corrupt")
    (tmp_path / "labelsTr" / "corrupt.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError) as err:
        check_pairs(find_pairs(tmp_path))
    msg = str(err.value)
    assert "4 bad cases of 5" in msg
    for name in ("grid:", "spacing:", "values:", "corrupt:"):
        assert name in msg
    assert "good:" not in msg and "values 7..7 outside 0..4" in msg


def test_unpaired_files_are_named(tmp_path):
    _case(tmp_path, "a")
    _write(tmp_path / "imagesTr" / "lonely_0000.nii.gz", np.zeros((2, 2, 2), np.int16))
    _write(tmp_path / "labelsTr" / "orphan.nii.gz", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(DataError, match="lonely.*\n.*orphan"):
        find_pairs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no <case>"):
        find_pairs(tmp_path / "empty")


def test_cache_is_canonical_memory_mapped_and_reused(tmp_path):
    direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    image, label = _case(tmp_path / "d", "x", direction=direction, spacing=(0.5, 0.7, 2.0))
    (case,) = load_dataset(tmp_path / "d", tmp_path / "cache")
    vol = read_ct(tmp_path / "d" / "imagesTr" / "x_0000.nii.gz")
    np.testing.assert_array_equal(case.image, vol.image)
    np.testing.assert_array_equal(case.label, vol.orientation.to_canonical(label))
    assert isinstance(case.image, np.memmap) and case.label.dtype == np.uint8
    assert case.spacing_zyx == pytest.approx(vol.spacing_zyx)
    stamp = (tmp_path / "cache" / "x.image.npy").stat().st_mtime_ns
    cache_case(find_pairs(tmp_path / "d")[0], tmp_path / "cache")
    assert (tmp_path / "cache" / "x.image.npy").stat().st_mtime_ns == stamp  # not decoded again


def test_split():
    names = [f"c{i}" for i in range(20)]
    train, val = split_cases(names, 0.2, seed=1)
    assert len(val) == 4 and set(train) | set(val) == set(names) and not set(train) & set(val)
    assert split_cases(names, 0.2, seed=1) == (train, val)
    assert split_cases(names, val_names=["c3"])[1] == ["c3"]
    with pytest.raises(ValueError):
        split_cases(names, val_names=["nope"])
