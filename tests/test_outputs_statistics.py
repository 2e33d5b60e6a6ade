"""Per-organ statistics (inference.outputs.statistics) against volumes and HU computed by hand, and the per-organ
masks (inference.outputs.organ_masks): names, values and geometry."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from inference.outputs.organ_masks import write_per_organ_masks
from inference.outputs.statistics import organ_statistics, write_statistics_csv, write_statistics_json
from inference.task import shared_data_dir

DATA = shared_data_dir()


def synthetic_case() -> tuple[sitk.Image, sitk.Image]:
    """A (z, y, x) = (5, 6, 7) case, spacing x 0.5, y 2, z 3 mm (3 mm^3 a voxel): a liver box of 2 x 3 x 4 voxels
    at z 1-2, y 2-4, x 1-4 at 50 HU with one voxel at 80 HU; a one-voxel spleen at -10 HU; no kidney or pancreas."""
    ct = np.full((5, 6, 7), -1000, np.int16)
    lab = np.zeros((5, 6, 7), np.uint8)
    lab[1:3, 2:5, 1:5] = 1
    ct[1:3, 2:5, 1:5] = 50
    ct[2, 4, 4] = 80
    lab[4, 0, 6] = 3
    ct[4, 0, 6] = -10
    images = []
    for array in (lab, ct):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.5, 2.0, 3.0))
        image.SetOrigin((10.0, -5.0, 2.0))
        images.append(image)
    return images[0], images[1]


def test_statistics_of_a_case_computed_by_hand():
    label, image = synthetic_case()
    stats = organ_statistics(label, image)
    assert list(stats) == ["liver", "kidney", "spleen", "pancreas"]
    liver = stats["liver"]
    assert liver["label"] == 1 and liver["voxels"] == 24
    assert liver["volume_ml"] == pytest.approx(24 * 3.0 / 1000)
    assert liver["hu_mean"] == pytest.approx((23 * 50 + 80) / 24)
    assert liver["hu_median"] == 50.0
    mean = (23 * 50 + 80) / 24
    assert liver["hu_std"] == pytest.approx(np.sqrt((23 * (50 - mean) ** 2 + (80 - mean) ** 2) / 24))
    assert liver["bbox_index_xyz"] == [[1, 2, 1], [4, 4, 2]]
    spleen = stats["spleen"]
    assert (spleen["voxels"], spleen["hu_mean"], spleen["hu_median"], spleen["hu_std"]) == (1, -10.0, -10.0, 0.0)
    assert spleen["volume_ml"] == pytest.approx(0.003) and spleen["bbox_index_xyz"] == [[6, 0, 4], [6, 0, 4]]
    for absent in ("kidney", "pancreas"):
        assert stats[absent]["voxels"] == 0 and stats[absent]["volume_ml"] == 0.0
        assert stats[absent]["hu_mean"] is None and stats[absent]["bbox_index_xyz"] is None


def test_real_case_volumes_match_the_manifests_voxel_counts():
    label = sitk.ReadImage(str(DATA / "TSEX_0002.nii.gz"))
    image = sitk.ReadImage(str(DATA / "TSEX_0002_0000.nii.gz"))
    stats = organ_statistics(label, image)
    counts = json.loads((DATA / "manifest.json").read_text())["cases"]["TSEX_0002"]["label_voxels"]
    for organ, entry in stats.items():
        assert entry["voxels"] == counts[organ]
        assert entry["volume_ml"] == pytest.approx(counts[organ] * 27.0 / 1000)  # 3 mm isotropic
    labels, values = sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(image)
    assert stats["liver"]["hu_mean"] == pytest.approx(values[labels == 1].mean())
    assert 0 < stats["liver"]["hu_mean"] < 120  # liver parenchyma


def test_statistics_refuse_two_grids():
    label, image = synthetic_case()
    with pytest.raises(ValueError, match="not one 3D grid"):
        organ_statistics(label, image[:, :, :4])


def test_json_and_csv_files(tmp_path):
    label, image = synthetic_case()
    stats = organ_statistics(label, image)
    path = write_statistics_json(stats, tmp_path / "a" / "statistics.json")
    assert json.loads(path.read_text()) == stats
    write_statistics_csv({"a": stats, "b": stats}, tmp_path / "statistics.csv")
    with open(tmp_path / "statistics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["case"], r["organ"]) for r in rows][:5] == [
        ("a", "liver"),
        ("a", "kidney"),
        ("a", "spleen"),
        ("a", "pancreas"),
        ("b", "liver"),
    ]
    assert float(rows[0]["volume_ml"]) == pytest.approx(0.072) and float(rows[0]["hu_median"]) == 50.0
    assert (rows[0]["x_min"], rows[0]["z_max"]) == ("1", "2")
    assert rows[1]["hu_mean"] == "" and rows[1]["x_min"] == "" and rows[1]["voxels"] == "0"


def test_per_organ_masks(tmp_path):
    label, _ = synthetic_case()
    paths = write_per_organ_masks(label, tmp_path, "case1")
    assert {k: p.name for k, p in paths.items()} == {
        "liver": "liver.nii.gz",
        "kidney": "kidney.nii.gz",
        "spleen": "spleen.nii.gz",
        "pancreas": "pancreas.nii.gz",
    }
    labels = sitk.GetArrayFromImage(label)
    for value, organ in enumerate(paths, start=1):
        mask = sitk.ReadImage(str(tmp_path / "case1" / f"{organ}.nii.gz"))
        assert mask.GetPixelID() == sitk.sitkUInt8
        assert mask.GetSpacing() == label.GetSpacing() and mask.GetOrigin() == label.GetOrigin()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), (labels == value).astype(np.uint8))
    assert not [p for p in (tmp_path / "case1").iterdir() if p.name.startswith(".")]  # no temporary file left
