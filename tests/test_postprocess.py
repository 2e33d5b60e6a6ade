import numpy as np
import pytest

from inference.postprocess import (
    RULES,
    SPLEEN_MARGIN_MM,
    filter_components,
    keep_largest_components,
    postprocess,
)

MM = (5.0, 1.0, 1.0)  # voxel spacing, mm (z y x): the pelvis of _bladder_case lies 200 mm below the liver


def _blob(vol, label, z, y, x, size):
    vol[z : z + size, y : y + size, x : x + size] = label


def test_keeps_largest_component_per_organ_and_three_kidneys():
    vol = np.zeros((30, 40, 40), dtype=np.uint8)
    _blob(vol, 1, 0, 0, 0, 6)  # liver: big
    _blob(vol, 1, 20, 20, 20, 2)  # liver debris
    for i, size in enumerate((5, 4, 3, 2)):  # four kidney pieces: keep the three largest
        _blob(vol, 2, 10, 8 * i, 30, size)
    _blob(vol, 3, 25, 0, 0, 3)  # one spleen piece stays
    out = keep_largest_components(vol)
    assert out.dtype == np.uint8
    assert (out == 1).sum() == 216
    assert (out == 2).sum() == 125 + 64 + 27
    assert (out == 3).sum() == 27
    assert (out == 4).sum() == 0  # absent stays absent
    assert out[20, 20, 20] == 0 and vol[20, 20, 20] == 1  # the input is not modified


def test_components_of_different_labels_that_touch_stay_apart():
    vol = np.zeros((10, 10, 10), dtype=np.uint8)
    vol[:, :, :5] = 1
    vol[:, :, 5:] = 4
    vol[0, 0, 9] = 0
    out = keep_largest_components(vol)
    np.testing.assert_array_equal(out, vol)


def test_diagonal_neighbours_are_connected_26():
    vol = np.zeros((5, 5, 5), dtype=np.uint8)
    vol[1, 1, 1] = vol[2, 2, 2] = vol[3, 3, 3] = 4  # corner-touching: one component
    vol[0, 4, 4] = 4  # separate, size 1
    out = keep_largest_components(vol)
    assert (out == 4).sum() == 3


def test_ties_and_empty_and_custom_keep():
    assert not keep_largest_components(np.zeros((3, 4, 5), np.uint8)).any()
    vol = np.zeros((5, 5, 9), dtype=np.uint8)
    vol[2, 2, 1] = vol[2, 2, 4] = vol[2, 2, 7] = 1
    assert (keep_largest_components(vol) == 1).sum() == 1
    assert (keep_largest_components(vol, {1: 2}) == 1).sum() == 2
    assert (keep_largest_components(vol, {}) == 1).sum() == 3


def test_rejects_non_3d():
    with pytest.raises(ValueError, match="3D"):
        keep_largest_components(np.zeros((4, 4), np.uint8))


def _bladder_case() -> np.ndarray:
    """A liver (head end, z high) smaller than a liver-labelled blob in the pelvis (z low), plus liver debris."""
    vol = np.zeros((60, 20, 20), dtype=np.uint8)
    _blob(vol, 1, 45, 2, 2, 8)  # liver tip: 512 voxels, cranial
    _blob(vol, 1, 2, 5, 5, 12)  # "bladder": 1,728 voxels, caudal
    _blob(vol, 1, 58, 15, 15, 2)  # debris above the liver: 8 voxels, under a tenth of the largest
    _blob(vol, 2, 25, 2, 2, 3)
    _blob(vol, 2, 25, 12, 12, 3)
    _blob(vol, 3, 46, 12, 12, 4)  # spleen beside the liver: 64 voxels
    _blob(vol, 3, 2, 0, 0, 5)  # "spleen" in the pelvis (bowel): 125 voxels, below the liver
    return vol


def test_cranial_liver_keeps_the_highest_large_component():
    vol = _bladder_case()
    out = postprocess(vol, MM, "anatomy")
    assert (out == 1).sum() == 512 and out[45, 2, 2] == 1  # the liver, not the larger blob below it or the debris
    assert (out == 2).sum() == 54  # kidney as the FLARE rule leaves it
    assert (out == 3).sum() == 64 and out[46, 12, 12] == 3  # the spleen beside the liver, not the larger one below
    flare = postprocess(vol, MM, "flare")
    assert (flare == 1).sum() == 1728 and flare[2, 5, 5] == 1
    assert (flare == 3).sum() == 125
    np.testing.assert_array_equal(postprocess(vol, MM, "none"), vol)
    assert (vol == 1).sum() == 512 + 1728 + 8  # the input is not modified


def test_without_a_liver_the_spleen_keeps_its_largest_component():
    vol = _bladder_case()
    vol[vol == 1] = 0
    np.testing.assert_array_equal(postprocess(vol, MM, "anatomy"), postprocess(vol, MM, "flare"))


def test_component_table_by_hand():
    vol = np.zeros((20, 4, 4), dtype=np.uint8)
    vol[0:4, :2, :2] = 3  # 16 voxels, z 0..3
    vol[10:14, :2, :2] = 3  # 16 voxels, z 10..13
    vol[12:13, 3, 3] = 1  # 1 voxel, z 12
    seen = []

    def choose(table):
        seen.append(table)
        return table.owner != 3  # drop the spleen pieces

    out = filter_components(vol, choose)
    table = seen[0]
    ids = {int(table.owner[i]): [] for i in range(1, table.sizes.size)}
    for i in range(1, table.sizes.size):
        ids[int(table.owner[i])].append((int(table.sizes[i]), float(table.z_mean[i]), int(table.z_min[i])))
    assert sorted(ids[3]) == [(16, 1.5, 0), (16, 11.5, 10)] and ids[1] == [(1, 12.0, 12)]
    assert list(table.ids(3)) == sorted(table.ids(3))  # equal sizes: lower id first
    assert (out == 3).sum() == 0 and (out == 1).sum() == 1 and (vol == 3).sum() == 32


def test_cranial_liver_equals_flare_for_one_dominant_liver():
    vol = _bladder_case()
    vol[45:53, 2:10, 2:10] = 0
    _blob(vol, 1, 48, 2, 2, 1)  # a cranial piece under a tenth of the largest: the largest wins as in FLARE
    np.testing.assert_array_equal(postprocess(vol, MM, "anatomy"), postprocess(vol, MM, "flare"))


def test_cranial_liver_fraction_and_height_axis():
    """A liver piece competes on height when it holds at least a tenth of the largest piece's voxels."""
    for high, kept in ((12, 125), (13, 13)):  # 12 < 0.1 x 125 <= 13
        vol = np.zeros((30, 8, 8), dtype=np.uint8)
        _blob(vol, 1, 0, 0, 0, 5)  # 125 voxels, low
        vol[20, 0, :8] = 1  # a piece of `high` voxels, high up: a row of 8 and the rest of the next row
        vol[20, 1, : high - 8] = 1
        assert (postprocess(vol, MM, "anatomy") == 1).sum() == kept, high
    assert not postprocess(np.zeros((3, 3, 3), np.uint8), MM, "anatomy").any()


def test_rules_are_validated():
    assert RULES == ("anatomy", "flare", "none")
    with pytest.raises(ValueError, match="unknown post-processing rule"):
        postprocess(np.zeros((3, 3, 3), np.uint8), MM, "largest")
    with pytest.raises(ValueError, match="3D"):
        postprocess(np.zeros((3, 3), np.uint8), MM, "anatomy")


def test_an_enlarged_spleen_reaching_below_the_liver_stays():
    """A spleen whose centroid lies within SPLEEN_MARGIN_MM below the liver's lowest slice is kept."""
    vol = np.zeros((60, 20, 20), dtype=np.uint8)
    _blob(vol, 1, 40, 2, 2, 10)  # liver, lowest slice z = 40
    _blob(vol, 3, 30, 12, 12, 6)  # spleen, centroid z = 32.5: 8 slices below the liver's lowest
    slices_below = 7.5
    near = (SPLEEN_MARGIN_MM / slices_below, 1.0, 1.0)  # exactly at the margin: kept
    far = (SPLEEN_MARGIN_MM / slices_below * 1.01, 1.0, 1.0)  # just beyond it: dropped
    assert (postprocess(vol, near, "anatomy") == 3).sum() == 216
    assert (postprocess(vol, far, "anatomy") == 3).sum() == 0
