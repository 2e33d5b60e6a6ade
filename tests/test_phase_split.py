"""training.phase_split: real scans cut into the in-plane phases inference sees, as training cases."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from training.data import check_pairs, find_pairs
from training.phase_split import inplane_axes, main, phases, stride_of


def _image(array_zyx: np.ndarray, spacing_xyz, direction=None, origin=(10.0, -20.0, 30.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def _case(folder: Path, name: str, spacing_xyz, shape_zyx=(5, 8, 12), direction=None, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ct = rng.integers(-1000, 1000, size=shape_zyx).astype(np.int16)
    labels = rng.integers(0, 5, size=shape_zyx).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(_image(ct, spacing_xyz, direction), str(folder / f"{name}_0000.nii.gz"))
    sitk.WriteImage(_image(labels, spacing_xyz, direction), str(folder / f"{name}.nii.gz"))
    return ct


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_phases_of_an_axial_scan_cut_x_and_y_and_keep_the_geometry():
    ct = np.arange(5 * 8 * 12, dtype=np.int16).reshape(5, 8, 12)
    image = _image(ct, (0.8, 0.8, 2.0))
    assert inplane_axes(image) == (0, 1)
    assert stride_of(image) == 4  # 3.2 mm voxels at stride 4
    subs = dict(phases(image, 4))
    assert sorted(subs) == [(i, j) for i in range(4) for j in range(4)]
    for (i, j), sub in subs.items():
        assert np.array_equal(sitk.GetArrayFromImage(sub), ct[:, j::4, i::4])  # i along x, j along y
        assert sub.GetSpacing() == pytest.approx((3.2, 3.2, 2.0))
        assert sub.GetOrigin() == pytest.approx(image.TransformIndexToPhysicalPoint((i, j, 0)))
        assert sub.GetDirection() == image.GetDirection()


def test_a_scan_stored_with_z_first_is_cut_in_its_axial_plane():
    # index axis x points along the patient's z: the in-plane axes are index y and z
    direction = (0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0)
    ct = np.arange(8 * 8 * 6, dtype=np.int16).reshape(8, 8, 6)  # (z, y, x) index order; x is the patient's z
    image = _image(ct, (2.0, 0.8, 0.8), direction)
    assert inplane_axes(image) == (1, 2)
    assert stride_of(image) == 4
    sub = dict(phases(image, 4))[(1, 3)]
    assert np.array_equal(sitk.GetArrayFromImage(sub), ct[3::4, 1::4, :])
    assert sub.GetSize()[0] == 6  # every slice kept


@pytest.mark.parametrize("spacing, stride", [(0.6, 4), (1.0, 4), (1.5, 2), (3.0, 1), (5.0, 1)])
def test_stride_is_the_one_inference_chooses(spacing, stride):
    assert stride_of(_image(np.zeros((2, 4, 4), np.int16), (spacing, spacing, 2.0))) == stride


def test_cli_writes_a_flare_folder_that_training_accepts(tmp_path):
    data = tmp_path / "data"
    fine = _case(data, "FINE_0001", (0.8, 0.8, 2.0))
    _case(data, "THICK_0002", (3.0, 3.0, 3.0), seed=1)
    before = _digest(data)
    out = tmp_path / "out"
    assert main(["--data", str(data), "--out", str(out), "--entries", "32"]) == 0
    assert _digest(data) == before  # inputs only read
    pairs = find_pairs(out)
    check_pairs(pairs)  # same grid for image and label, labels in 0..4
    names = [p.name for p in pairs]
    assert sum(n.startswith("FINE_0001") for n in names) == 32  # 16 phases, twice each
    assert sum(n.startswith("THICK_0002") for n in names) == 32  # 1 phase, 32 times
    assert "FINE_0001_p21" in names and "FINE_0001_p21_r1" in names and "THICK_0002_p00_r31" in names
    link = out / "imagesTr" / "FINE_0001_p21_r1_0000.nii.gz"
    assert link.is_symlink() and link.resolve() == (out / "imagesTr" / "FINE_0001_p21_0000.nii.gz").resolve()
    phase = sitk.GetArrayFromImage(sitk.ReadImage(str(link)))
    assert np.array_equal(phase, fine[:, 1::4, 2::4])
    assert not [p for p in (out / "imagesTr").iterdir() if p.name.startswith(".")]  # no temporary left


def test_cli_default_writes_each_phase_once(tmp_path):
    _case(tmp_path / "data", "FINE_0001", (0.8, 0.8, 2.0))
    assert main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]) == 0
    assert len(find_pairs(tmp_path / "out")) == 16


def test_cli_names_a_bad_case_and_writes_the_others(tmp_path, capsys):
    data = tmp_path / "data"
    _case(data, "GOOD_0001", (3.0, 3.0, 3.0))
    _case(data, "BAD_0002", (3.0, 3.0, 3.0))
    (data / "BAD_0002.nii.gz").write_bytes(b"not a nifti")
    assert main(["--data", str(data), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    bad = [line for line in err.splitlines() if "BAD_0002" in line]
    assert len(bad) == 1 and bad[0].startswith("BAD_0002: cannot read")
    assert [p.name for p in find_pairs(tmp_path / "out")] == ["GOOD_0001_p00"]


def test_cli_refuses_entries_that_do_not_divide_into_phases(tmp_path, capsys):
    _case(tmp_path / "data", "FINE_0001", (0.8, 0.8, 2.0))
    assert main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--entries", "20"]) == 1
    assert "--entries 20 is not a multiple of its 16 phases (stride 4)" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["data", "data/imagesTr"])
def test_cli_refuses_to_write_into_its_inputs(tmp_path, out):
    _case(tmp_path / "data", "FINE_0001", (0.8, 0.8, 2.0))
    with pytest.raises(SystemExit) as exit_:
        main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / out)])
    assert exit_.value.code == 2
