"""Surface distances computed once and the metrics read from them (HD95, average surface distance, surface Dice),
against hand-computed voxel pairs and DeepMind's surface-distance package; score_labels for labels above 7."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from evaluation.metrics import (
    average_surface_distance,
    dice,
    hausdorff_distance,
    labels_present,
    nsd,
    score_labels,
    surface_dice,
    surface_distances,
)

pytestmark = pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")  # the reference's scipy import


def _two_voxels(gap: int) -> tuple[np.ndarray, np.ndarray]:
    """One voxel at x = 0 and one at x = gap + 1 (``gap`` empty voxels between them), in a 1 x 1 x (gap + 2) box."""
    gt = np.zeros((1, 1, gap + 2), bool)
    pred = np.zeros_like(gt)
    gt[0, 0, 0] = pred[0, 0, -1] = True
    return gt, pred


@pytest.mark.parametrize("sx", [1.0, 2.0])
def test_two_single_voxels_by_hand(sx):
    # Each voxel has 8 surfels (its corners), of equal area. The voxels are 3 voxels apart along x (two empty
    # between them): the 4 corners that face the other voxel are 2 * sx from its nearest corners, the 4 far ones
    # 3 * sx. So, in both directions, half the area lies at 2 sx and half at 3 sx.
    gt, pred = _two_voxels(gap=2)
    d = surface_distances(gt, pred, (1.0, 1.0, sx))
    assert d.gt_to_pred_mm.tolist() == [2 * sx] * 4 + [3 * sx] * 4
    assert d.pred_to_gt_mm.tolist() == [2 * sx] * 4 + [3 * sx] * 4
    assert np.all(d.gt_areas_mm2 == d.gt_areas_mm2[0]) and np.all(d.pred_areas_mm2 == d.gt_areas_mm2[0])
    assert hausdorff_distance(d) == 3 * sx  # the 95th percentile lies among the far corners
    assert hausdorff_distance(d, 50) == 2 * sx  # half the area is within 2 sx
    assert hausdorff_distance(d, 100) == 3 * sx
    assert average_surface_distance(d) == pytest.approx(2.5 * sx, abs=1e-12)
    assert surface_dice(d, 2 * sx) == 0.5 and surface_dice(d, 3 * sx) == 1.0 and surface_dice(d, 1.9 * sx) == 0.0


def test_identical_masks_are_at_distance_zero():
    mask = np.zeros((5, 6, 7), bool)
    mask[1:4, 2:5, 1:6] = True
    d = surface_distances(mask, mask, (2.5, 0.8, 0.8))
    assert hausdorff_distance(d) == 0.0 and average_surface_distance(d) == 0.0 and surface_dice(d, 0.0) == 1.0


def test_edge_cases():
    empty = np.zeros((4, 4, 4), bool)
    one = empty.copy()
    one[1, 1, 1] = True
    both_empty = surface_distances(empty, empty, (1, 1, 1))
    assert hausdorff_distance(both_empty) == 0.0 and average_surface_distance(both_empty) == 0.0
    assert surface_dice(both_empty) == 1.0
    for gt, pred in ((one, empty), (empty, one)):
        d = surface_distances(gt, pred, (1, 1, 1))
        assert hausdorff_distance(d) == math.inf and average_surface_distance(d) == math.inf
        assert surface_dice(d) == 0.0 == nsd(gt, pred, (1, 1, 1))
    with pytest.raises(ValueError, match="percent"):
        hausdorff_distance(both_empty, 101)
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(one, one, (1.0, 0.0, 1.0))


def test_metrics_match_the_reference_package_on_random_shapes():
    sd = pytest.importorskip("surface_distance")
    rng = np.random.default_rng(3)
    for _ in range(12):
        shape = tuple(int(n) for n in rng.integers(6, 18, 3))
        spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, 3))
        gt, pred = (ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) > 0.3 for _ in range(2))
        if not (gt.any() and pred.any()):
            continue  # the reference divides by zero there (edge cases above)
        ref = sd.compute_surface_distances(gt, pred, spacing)
        d = surface_distances(gt, pred, spacing)
        np.testing.assert_array_equal(d.gt_to_pred_mm, ref["distances_gt_to_pred"])
        np.testing.assert_array_equal(d.pred_to_gt_mm, ref["distances_pred_to_gt"])
        for percent in (50, 95, 100):
            assert hausdorff_distance(d, percent) == sd.compute_robust_hausdorff(ref, percent)
        to_pred, to_gt = sd.compute_average_surface_distance(ref)
        a_gt, a_pred = ref["surfel_areas_gt"].sum(), ref["surfel_areas_pred"].sum()
        expected = (to_pred * a_gt + to_gt * a_pred) / (a_gt + a_pred)
        assert average_surface_distance(d) == pytest.approx(expected, abs=1e-12)
        for tol in (0.5, 1.0, 2.0):
            assert surface_dice(d, tol) == pytest.approx(nsd(gt, pred, spacing, tol), abs=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32])
def test_score_labels_takes_labels_above_seven(dtype):
    rng = np.random.default_rng(7)
    shape = (10, 14, 12)
    labels = (3, 9, 12, 200) if dtype == np.uint8 else (3, 9, 12, 200, 1000)
    gt, pred = np.zeros(shape, dtype), np.zeros(shape, dtype)
    for k, v in enumerate(labels):
        gt[ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) > 0.6 + 0.05 * k] = v
        pred[ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) > 0.6 + 0.05 * k] = v
    if np.issubdtype(dtype, np.signedinteger):
        gt[0, 0, 0] = -3  # a negative value is no label
    spacing = (2.0, 0.9, 0.7)
    wanted = (*labels, 13, 255)  # 13 and 255 occur in neither map
    scores = score_labels(gt, pred, spacing, labels=wanted)
    for v in wanted:
        expected = (dice(gt == v, pred == v), nsd(gt == v, pred == v, spacing))
        assert scores[v] == pytest.approx(expected, abs=1e-12), v
    assert scores[13] == scores[255] == (1.0, 1.0)
    assert labels_present(gt, wanted) == {v for v in labels if (gt == v).any()}
    with pytest.raises(ValueError, match="labels must be integers >= 1"):
        score_labels(gt, pred, spacing, labels=(0, 1))
