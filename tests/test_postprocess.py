import numpy as np
import pytest

from inference.postprocess import keep_largest_components


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
