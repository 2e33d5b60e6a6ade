"""Tests of the CT phantom generator (phantom/generate.py) and its labels mode (phantom/from_labels.py,
phantom/templates.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from phantom import cli
from phantom.generate import generate_case, write_dataset
from phantom.grid import orientation_set
from training.shared_data import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = shared_data_dir()
TEMPLATES = SHARED / "templates"

# a small case covering the whole abdomen: 96 x 96 at 4.2 mm (403 mm field of view), 60 slices of 6 mm
FULL = dict(size_xy=96, slices=60, spacing=(4.2, 4.2, 6.0), generator_version=2)


def arrays(img: sitk.Image, lab: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(lab)


def world_points(img: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """(N, 3) world xyz mm of the voxels of a zyx mask."""
    k, j, i = np.nonzero(mask)
    idx = np.stack([i, j, k], axis=1).astype(float)
    d = np.array(img.GetDirection()).reshape(3, 3)
    return np.array(img.GetOrigin()) + (idx * np.array(img.GetSpacing())) @ d.T


@pytest.fixture(scope="module")
def full_cases():
    """Full-abdomen cases in random orientations (all 48 signed axis permutations allowed)."""
    return {s: generate_case(s, orientations="any", phase="venous", **FULL) for s in (0, 1, 2, 3)}


def test_deterministic_by_seed():
    a = arrays(*generate_case(7, size_xy=48, slices=20))
    b = arrays(*generate_case(7, size_xy=48, slices=20))
    c = arrays(*generate_case(8, size_xy=48, slices=20))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_dtypes_label_set_and_all_organs(full_cases):
    for img, lab in full_cases.values():
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        assert img.GetSize() == lab.GetSize() and img.GetOrigin() == lab.GetOrigin()
        assert img.GetSpacing() == lab.GetSpacing() and img.GetDirection() == lab.GetDirection()
        _, la = arrays(img, lab)
        assert set(np.unique(la)) == {0, 1, 2, 3, 4}


def test_anatomy_sides_in_world_coordinates(full_cases):
    directions = set()
    for img, lab in full_cases.values():
        directions.add(img.GetDirection())
        im, la = arrays(img, lab)
        body = world_points(img, (im > -300) & (im < 200)).mean(axis=0)  # soft tissue: the body's centre
        c = {k: world_points(img, la == k).mean(axis=0) for k in (1, 3, 4)}
        comps, n = ndimage.label(la == 2)
        sizes = ndimage.sum(np.ones_like(comps), comps, range(1, n + 1))
        big = np.argsort(sizes)[::-1][:2] + 1
        assert len(big) == 2, "two kidneys"
        kc = sorted((world_points(img, comps == b).mean(axis=0) for b in big), key=lambda p: p[0])
        spine_x = (kc[0][0] + kc[1][0]) / 2
        assert abs(spine_x - body[0]) < 25, "the kidneys straddle the body's midline"
        assert kc[1][0] - kc[0][0] > 80, "kidneys either side of the spine"
        assert c[1][0] < spine_x - 30, "liver on the patient's right (LPS x below the midline)"
        assert c[3][0] > spine_x + 30, "spleen on the patient's left"
        assert c[3][1] > c[1][1], "spleen posterior to the liver's centre"
        assert min(kc[0][1], kc[1][1]) > c[1][1], "kidneys posterior (retroperitoneal)"
        assert c[4][1] < kc[1][1] - 15, "pancreas anterior to the left kidney"
        assert kc[0][0] < c[4][0] < kc[1][0] + 20, "pancreas across the midline"
        lung = (im < -700) & (im > -950)
        zs = world_points(img, lung)[:, 2]
        assert (zs > c[1][2] + 50).sum() > 200, "lung bases in the top slices, above the liver's centre"
    assert len(directions) > 1, "several orientations were drawn"


def test_each_organ_is_one_piece():
    """The labels are what post-processing keeps: one liver, spleen and pancreas, two kidneys (26-connected).

    The pancreas must be exactly one component (no vessel painted across it, no lobulation islands); the other
    organs may have stray voxels (<= 0.5 %) where a vessel grazes their surface.
    """
    for seed in range(12):
        options = dict(size_xy=128, slices=100, spacing=(3.0, 3.0, 3.0), mode="phantom", generator_version=2)
        case = generate_case(seed, **options)
        _, la = arrays(*case)
        for organ, keep in ((1, 1), (2, 2), (3, 1), (4, 1)):
            comps, n = ndimage.label(la == organ, structure=np.ones((3, 3, 3)))
            sizes = np.sort(np.bincount(comps.ravel())[1:])[::-1]
            assert n >= keep, f"seed {seed}: label {organ} has {n} components"
            if organ == 4:
                assert n == 1, f"seed {seed}: the pancreas is in {n} pieces, sizes {sizes.tolist()}"
            assert sizes[:keep].sum() >= 0.995 * sizes.sum(), f"seed {seed}: label {organ} pieces {sizes.tolist()}"


def test_same_anatomy_in_every_orientation():
    img_c, lab_c = generate_case(5, orientations="canonical", size_xy=48, slices=24, spacing=(8.0, 8.0, 10.0))
    img_a, lab_a = generate_case(5, orientations="any", size_xy=48, slices=24, spacing=(8.0, 8.0, 10.0))
    assert img_a.GetDirection() != img_c.GetDirection()
    moved = sitk.Resample(lab_a, lab_c, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(moved), sitk.GetArrayFromImage(lab_c))


@pytest.mark.parametrize(
    ("phase", "ranges"),
    [
        ("plain", {1: (35, 80), 2: (10, 60), 3: (25, 70), 4: (15, 70)}),
        ("venous", {1: (80, 140), 2: (110, 200), 3: (80, 140), 4: (60, 125)}),
    ],
)
def test_hounsfield_units_per_organ(phase, ranges):
    img, lab = generate_case(11, phase=phase, **FULL)
    im, la = arrays(img, lab)
    for organ, (lo, hi) in ranges.items():
        inner = ndimage.binary_erosion(la == organ)
        med = float(np.median(im[inner if inner.sum() > 20 else la == organ]))
        assert lo <= med <= hi, f"organ {organ} median {med} HU outside {lo}..{hi} ({phase})"
    assert np.median(im[0, :3, :3]) < -900 or np.median(im[0, :3, :3]) <= -1024, "air in the corners"
    assert im.max() > 500, "bone"


def test_geometry_within_options():
    for seed in range(6):
        img, lab = generate_case(seed, size_xy=40, slice_range=(20, 30), spacing_z_range=(1.0, 2.5))
        sx, sy, sz = img.GetSpacing()
        nx, ny, nz = img.GetSize()
        assert (nx, ny) == (40, 40) and 20 <= nz <= 30
        assert sx == sy and 0.6 * 512 / 40 - 1e-6 <= sx <= 1.0 * 512 / 40 + 1e-6
        assert 1.0 <= sz <= 2.5
        d = np.array(img.GetDirection()).reshape(3, 3)
        assert abs(d[2, 2]) == 1.0, "'axial' orientations keep the slice axis along z"
    img, _ = generate_case(1, size_xy=64, slices=25, spacing=(0.7, 0.7, 3.0))
    assert img.GetSize()[2] == 25 and np.allclose(img.GetSpacing(), (0.7, 0.7, 3.0))


def test_default_spacing_ranges_are_flares():
    rng = np.random.default_rng(0)
    from phantom.grid import draw_spacing

    for _ in range(200):
        n, sxy, sz = draw_spacing(rng, 512, (20, 300), None, (0.8, 5.0), 500.0)
        assert 20 <= n <= 300 and 0.6 <= sxy <= 1.0 and 0.8 <= sz <= 5.0


def test_orientation_sets():
    assert len(orientation_set("canonical")) == 1
    assert any(np.array_equal(m, np.diag([-1.0, -1.0, 1.0])) for m in orientation_set("axial"))
    assert all(abs(m[2, 2]) == 1 for m in orientation_set("axial"))
    assert len({m.tobytes() for m in orientation_set("any")}) == 48


@pytest.mark.parametrize(
    "bad",
    [
        dict(size_xy=8),
        dict(phase="late"),
        dict(mode="gan"),
        dict(slices=0),
        dict(spacing=(1.0, 1.0)),
        dict(slice_range=(30, 20)),
    ],
)
def test_invalid_options_raise_value_error(bad):
    with pytest.raises(ValueError):
        generate_case(0, **{"size_xy": 32, **bad})
    with pytest.raises(ValueError):
        generate_case(-1)


@pytest.mark.parametrize(
    ("layout", "img_dir", "lab_dir"),
    [("nnunet", "imagesTr", "labelsTr"), ("flare21", "TrainingImg", "TrainingMask")],
)
def test_cli_writes_layout(tmp_path, layout, img_dir, lab_dir):
    rc = cli.main(
        [
            "--out",
            str(tmp_path),
            "--cases",
            "2",
            "--seed",
            "3",
            "--size",
            "40",
            "--slices",
            "20",
            "22",
            "--layout",
            layout,
        ]
    )
    assert rc == 0
    for name in ("PHANTOM_0000", "PHANTOM_0001"):
        img = sitk.ReadImage(str(tmp_path / img_dir / f"{name}_0000.nii.gz"))
        lab = sitk.ReadImage(str(tmp_path / lab_dir / f"{name}.nii.gz"))
        assert img.GetPixelID() == sitk.sitkInt16 and lab.GetPixelID() == sitk.sitkUInt8
        assert img.GetSize() == lab.GetSize()
        assert np.allclose(img.GetOrigin(), lab.GetOrigin()) and np.allclose(img.GetDirection(), lab.GetDirection())
        assert set(np.unique(sitk.GetArrayViewFromImage(lab))) <= {0, 1, 2, 3, 4}
    assert not list(tmp_path.rglob(".tmp_*")), "no temporary files left"


def test_flat_and_images_only(tmp_path):
    names = write_dataset(tmp_path / "flat", 1, 0, flat=True, size_xy=32, slices=20)
    assert names == ["PHANTOM_0000"]
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == [
        "PHANTOM_0000.nii.gz",
        "PHANTOM_0000_0000.nii.gz",
        "manifest.json",
    ]
    write_dataset(tmp_path / "img", 1, 0, flat=True, images_only=True, size_xy=32, slices=20)
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["PHANTOM_0000_0000.nii.gz", "manifest.json"]
    # case i does not depend on how many cases are written
    write_dataset(tmp_path / "two", 2, 0, flat=True, size_xy=32, slices=20)
    a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "flat" / "PHANTOM_0000_0000.nii.gz")))
    b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "two" / "PHANTOM_0000_0000.nii.gz")))
    np.testing.assert_array_equal(a, b)


def test_a_case_larger_than_memory_is_a_one_line_usage_error(tmp_path):
    """--size 40000 (up to 300 slices: 4.8e11 voxels) is refused before anything is generated or created."""
    result = subprocess.run(
        [sys.executable, "-m", "phantom", "--out", str(tmp_path / "out"), "--size", "40000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "error: --size 40000 with up to 300 slices is 480,000,000,000 voxels a case, about 10,728.8 GB to generate, "
        "more than the "
    ), result.stderr
    assert not (tmp_path / "out").exists()


def test_running_out_of_memory_while_generating_is_one_line(tmp_path, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(cli, "write_dataset", no_memory)
    assert cli.main(["--out", str(tmp_path), "--size", "64"]) == 1
    assert capsys.readouterr().err == "error: out of memory generating a 64 x 64 case; try a smaller --size\n"


def test_class_name_mapping():
    from phantom.templates import class_tissue, flare_label

    assert [flare_label(n) for n in ("liver", "kidney_left", "kidney_cyst_right", "spleen", "pancreas")] == [
        1,
        2,
        2,
        3,
        4,
    ]
    assert flare_label("stomach") == flare_label("aorta") == flare_label("vertebrae_L1") == 0
    assert class_tissue("vertebrae_L1") == "bone" and class_tissue("rib_left_3") == "bone"
    assert class_tissue("lung_lower_lobe_left") == "lung" and class_tissue("inferior_vena_cava") == "ivc"


@pytest.mark.skipif(
    not (TEMPLATES / "classes.json").exists(),
    reason=f"templates folder {TEMPLATES} absent (set RUNET_SHARED_DATA to the shared data folder)",
)
def test_labels_mode_puts_organs_where_the_template_has_them():
    from phantom.templates import flare_label, list_templates, load_template

    spacings, organs = set(), set()
    for seed in range(5):
        img, lab = generate_case(
            seed, mode="labels", size_xy=48, slices=20, phase="venous", templates_dir=TEMPLATES, generator_version=2
        )
        im, la = arrays(img, lab)
        assert img.GetPixelID() == sitk.sitkInt16 and set(np.unique(la)) <= {0, 1, 2, 3, 4}
        present = set(np.unique(la)) - {0}
        assert present, "the sampled slab holds some of the template's organs"
        organs |= present
        if 1 in present and (la == 1).sum() > 50:
            assert 40 < float(np.median(im[la == 1])) < 200, "liver HU"
        spacings.add(img.GetSpacing())
    assert len(spacings) > 1 and {1, 2, 3} <= organs
    # the AMOS map has no bones: a spine is synthesized behind its aorta
    amos = TEMPLATES / "AMOS_0013_label.nii.gz"
    if amos.exists():
        from phantom.templates import CORTEX, MARROW

        tpl = load_template(str(amos))
        assert tpl.synthetic_spine and np.isin(tpl.classes, [CORTEX, MARROW]).sum() > 1000
    # template organs map to FLARE labels
    for path in list_templates(TEMPLATES):
        tpl = load_template(str(path))
        present = {flare_label(tpl.names.get(int(i), "")) for i in np.unique(tpl.classes)}
        assert 1 in present


def test_labels_mode_missing_templates_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="classes.json"):
        generate_case(0, mode="labels", size_xy=32, slices=20, templates_dir=tmp_path)
