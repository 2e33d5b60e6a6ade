import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from inference.ct_io import InputError, Orientation, case_name, read_ct, write_labels


def _directions():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, sgn) in enumerate(zip(perm, signs)):
                m[row, col] = sgn
            yield tuple(m.ravel())


def _image(shape_zyx=(4, 5, 6), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), spacing=(0.8, 0.9, 2.5)):
    arr = np.arange(np.prod(shape_zyx), dtype=np.int16).reshape(shape_zyx)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize("direction", list(_directions()))
def test_canonical_orientation_matches_world_coordinates(direction, tmp_path):
    img = _image(direction=direction)
    sitk.WriteImage(img, str(tmp_path / "a_0000.nii.gz"))
    vol = read_ct(tmp_path / "a_0000.nii.gz")
    # canonical voxel [k, j, i] must sit at world origin' + (i*sx, j*sy, k*sz) with world axes increasing
    can = vol.image
    world = np.array(
        [img.TransformIndexToPhysicalPoint(idx) for idx in itertools.product(*(range(s) for s in img.GetSize()))]
    )
    values = sitk.GetArrayFromImage(img).transpose(2, 1, 0).reshape(-1)  # xyz index order as above
    order = np.lexsort((world[:, 0], world[:, 1], world[:, 2]))  # sort by z, then y, then x
    np.testing.assert_array_equal(can.reshape(-1), values[order])
    sz, sy, sx = vol.spacing_zyx
    assert np.allclose(np.diff(np.unique(world[:, 0].round(6))), sx)
    assert np.allclose(np.diff(np.unique(world[:, 2].round(6))), sz)
    # and back exactly
    np.testing.assert_array_equal(vol.orientation.from_canonical(can), sitk.GetArrayFromImage(img))


def test_write_copies_geometry_exactly_and_atomically(tmp_path):
    img = _image(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "case_0000.nii.gz"))
    vol = read_ct(tmp_path / "case_0000.nii.gz")
    labels = (vol.image % 5).astype(np.uint8)
    write_labels(tmp_path / "case.nii.gz", labels, vol)
    out = sitk.ReadImage(str(tmp_path / "case.nii.gz"))
    img = sitk.ReadImage(str(tmp_path / "case_0000.nii.gz"))  # NIfTI stores float32 geometry: compare as read
    assert out.GetPixelID() == sitk.sitkUInt8
    for attr in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(out, attr)() == getattr(img, attr)()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(img) % 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz", "case_0000.nii.gz"]
    with pytest.raises(ValueError, match="does not match"):
        write_labels(tmp_path / "bad.nii.gz", labels[:-1], vol)
    assert not (tmp_path / "bad.nii.gz").exists()


def test_case_name():
    assert case_name("x/FLARE_001_0000.nii.gz") == "FLARE_001"
    with pytest.raises(ValueError):
        case_name("x/FLARE_001.nii.gz")


def test_orientation_rejects_degenerate_direction():
    with pytest.raises(ValueError, match="degenerate"):
        Orientation.from_direction((1, 0, 0, 1, 0, 0, 0, 0, 1))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage"), "cannot read"),
        (lambda p: sitk.WriteImage(sitk.Image([8, 8], sitk.sitkInt16), str(p)), "3D image"),
        (lambda p: sitk.WriteImage(sitk.Image([4, 4, 4, 2], sitk.sitkInt16), str(p)), "3D image"),
        (lambda p: sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorInt16, 3), str(p)), "scalar"),
    ],
)
def test_bad_files_raise_one_line_errors(tmp_path, make, match):
    path = tmp_path / "bad_0000.nii.gz"
    make(path)
    with pytest.raises(InputError, match=match) as info:
        read_ct(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
