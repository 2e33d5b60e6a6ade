"""DSC and NSD against DeepMind's surface-distance (the organizers' reference) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from evaluation import metrics
from evaluation.metrics import FLARE22_TOLERANCES_MM, dice, nsd, score_labels, tolerance_offsets
from evaluation.surfels import neighbour_codes, surfel_area_table

sd = pytest.importorskip("surface_distance")
# The reference package imports through scipy namespaces deprecated since SciPy 1.8.
pytestmark = pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")
from surface_distance import lookup_tables  # noqa: E402


def reference(gt: np.ndarray, pred: np.ndarray, spacing, tol: float) -> tuple[float, float]:
    """DSC and NSD as the organizers compute them (edge cases first: the package fails on empty masks)."""
    if not gt.any():
        return (1.0, 1.0) if not pred.any() else (0.0, 0.0)
    if not pred.any():
        return 0.0, 0.0
    dists = sd.compute_surface_distances(gt, pred, spacing)
    ref_nsd = sd.compute_surface_dice_at_tolerance(dists, tol)
    return float(sd.compute_dice_coefficient(gt, pred)), float(ref_nsd)


def blob(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 1.5) -> np.ndarray:
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma) > 0.1


def random_pairs(seed: int, n: int):
    """Random shapes with anisotropic spacings: independent blobs, and blobs with a noisy or shifted copy."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = tuple(int(v) for v in rng.integers(6, 28, 3))
        gt = blob(rng, shape)
        kind = i % 3
        if kind == 0:
            pred = blob(rng, shape)
        elif kind == 1:
            pred = gt ^ (rng.random(shape) < 0.03)
        else:
            pred = np.roll(gt, int(rng.integers(1, 3)), axis=int(rng.integers(0, 3)))
        if i % 2:
            spacing = tuple(float(v) for v in rng.choice([0.5, 0.8, 1.0, 2.0, 2.5, 3.0], 3))
        else:
            spacing = tuple(float(v) for v in rng.uniform(0.3, 4.0, 3))
        yield gt, pred, spacing


@pytest.mark.parametrize("seed", [0, 1])
def test_surfel_areas_match_the_reference_table(seed):
    rng = np.random.default_rng(seed)
    for spacing in [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), *[tuple(rng.uniform(0.2, 5.0, 3)) for _ in range(10)]]:
        ours = surfel_area_table(spacing)
        ref = lookup_tables.create_table_neighbour_code_to_surface_area(spacing)
        np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)


def test_neighbour_codes_match_the_reference_kernel():
    rng = np.random.default_rng(3)
    mask = rng.random((7, 9, 11)) < 0.4
    padded = np.zeros((8, 10, 12), np.uint8)
    padded[:-1, :-1, :-1] = mask
    ref = ndimage.correlate(padded, lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, mode="constant", cval=0)
    np.testing.assert_array_equal(neighbour_codes(mask), ref)


@pytest.mark.parametrize("tol", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_nsd_and_dice_match_the_reference_on_random_shapes(tol):
    for gt, pred, spacing in random_pairs(seed=int(tol * 10), n=12):
        ref_dsc, ref_nsd = reference(gt, pred, spacing, tol)
        assert abs(nsd(gt, pred, spacing, tol) - ref_nsd) <= 1e-9
        assert abs(dice(gt, pred) - ref_dsc) <= 1e-12


def test_distance_transform_fallback_gives_the_same_numbers(monkeypatch):
    pairs = list(random_pairs(seed=7, n=9))
    fast = [nsd(g, p, s, 1.0) for g, p, s in pairs]
    monkeypatch.setattr(metrics, "_GATHER_TO_EDT_COST", 0)
    slow = [nsd(g, p, s, 1.0) for g, p, s in pairs]
    ref = [reference(g, p, s, 1.0)[1] for g, p, s in pairs]
    np.testing.assert_allclose(fast, ref, atol=1e-9, rtol=0)
    np.testing.assert_allclose(slow, ref, atol=1e-9, rtol=0)


def test_tolerance_exactly_on_a_voxel_distance():
    """A surface one voxel (exactly 1 mm) away is within a 1 mm tolerance: <= as in the reference."""
    gt = np.zeros((12, 12, 12), bool)
    gt[3:8, 3:8, 3:8] = True
    pred = np.roll(gt, 1, axis=0)
    assert nsd(gt, pred, (1.0, 1.0, 1.0), 1.0) == pytest.approx(1.0, abs=1e-12)
    assert nsd(gt, pred, (1.0, 1.0, 1.0), 1.0) == pytest.approx(reference(gt, pred, (1.0, 1.0, 1.0), 1.0)[1])


def test_single_voxels_two_voxels_apart_by_hand():
    """Each voxel has 8 corner surfels of equal area: 4 lie 1 mm from the other voxel's, 4 lie 2 mm."""
    gt = np.zeros((9, 9, 9), bool)
    pred = np.zeros_like(gt)
    gt[4, 4, 3] = True
    pred[4, 4, 5] = True
    spacing = (3.0, 2.0, 1.0)
    assert nsd(gt, pred, spacing, 1.0) == pytest.approx(0.5, abs=1e-12)
    assert nsd(gt, pred, spacing, 0.99) == 0.0
    assert dice(gt, pred) == 0.0
    assert nsd(gt, pred, spacing, 1.0) == pytest.approx(reference(gt, pred, spacing, 1.0)[1], abs=1e-12)


@pytest.mark.parametrize("n", [3, 5, 8])
def test_cube_shifted_by_one_voxel_by_hand(n):
    """An n^3 cube against itself moved one voxel along z, 1 mm isotropic.

    Surfels: face corners (area 1), edge corners (sqrt(2)/2), vertex corners (sqrt(3)/8). At a 0.5 mm
    tolerance only the corners the two surfaces share count: for the ground truth, its side rings
    z = 1..n-1 (each 4(n-1) face corners and 4 edge corners) and its top ring z = n (4(n-1) edge corners
    and 4 vertices); the same area for the prediction by symmetry. At 1 mm every surfel has a partner
    exactly 1 mm away.
    """
    edge, vertex = math.sqrt(2) / 2, math.sqrt(3) / 8
    total = 6 * (n - 1) ** 2 + 12 * (n - 1) * edge + 8 * vertex
    shared = (n - 1) * (4 * (n - 1) + 4 * edge) + 4 * (n - 1) * edge + 4 * vertex
    gt = np.zeros((n + 4, n + 4, n + 4), bool)
    gt[2 : 2 + n, 2 : 2 + n, 2 : 2 + n] = True
    pred = np.roll(gt, 1, axis=0)
    assert nsd(gt, pred, (1.0, 1.0, 1.0), 0.5) == pytest.approx(shared / total, abs=1e-12)
    assert nsd(gt, pred, (1.0, 1.0, 1.0), 1.0) == pytest.approx(1.0, abs=1e-12)
    assert dice(gt, pred) == pytest.approx((n - 1) / n, abs=1e-12)
    assert nsd(gt, pred, (1.0, 1.0, 1.0), 0.5) == pytest.approx(reference(gt, pred, (1, 1, 1), 0.5)[1])
    # With 2 mm slices the top and bottom faces are 2 mm apart: only the shared rings remain within 1 mm.
    spacing = (2.0, 1.0, 1.0)
    assert nsd(gt, pred, spacing, 1.0) == pytest.approx(reference(gt, pred, spacing, 1.0)[1], abs=1e-12)
    assert nsd(gt, pred, spacing, 1.0) < 1.0


def test_edge_cases_as_the_organizers_score_them():
    empty = np.zeros((5, 6, 7), bool)
    full = empty.copy()
    full[1:3, 2:4, 3:5] = True
    assert (dice(empty, empty), nsd(empty, empty, (1, 1, 1))) == (1.0, 1.0)
    assert (dice(empty, full), nsd(empty, full, (1, 1, 1))) == (0.0, 0.0)
    assert (dice(full, empty), nsd(full, empty, (1, 1, 1))) == (0.0, 0.0)
    assert (dice(full, full), nsd(full, full, (2.5, 0.7, 0.7))) == (1.0, 1.0)


def test_masks_touching_the_volume_border():
    rng = np.random.default_rng(11)
    gt = blob(rng, (10, 12, 14))
    gt[0] = True
    gt[:, :, -1] = True
    pred = np.roll(gt, 1, axis=1)
    for tol in (0.5, 1.0, 3.0):
        expected = reference(gt, pred, (2.0, 0.9, 0.7), tol)[1]
        assert nsd(gt, pred, (2.0, 0.9, 0.7), tol) == pytest.approx(expected, abs=1e-9)


def test_invalid_inputs_raise_value_error():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="bool"):
        nsd(a.astype(np.uint8), a, (1, 1, 1))
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="3D"):
        dice(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="spacing"):
        nsd(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        nsd(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        nsd(a, a, (1, 1, 1), -1.0)
    with pytest.raises(ValueError, match="tolerance"):
        nsd(a, a, (1, 1, 1), float("nan"))


def test_tolerance_offsets_are_nearest_first_and_within():
    spacing = (2.5, 0.8, 0.8)
    offs = tolerance_offsets(spacing, 1.0)
    assert offs[0].tolist() == [0, 0, 0]
    assert sorted(map(tuple, offs.tolist())) == [(0, -1, 0), (0, 0, -1), (0, 0, 0), (0, 0, 1), (0, 1, 0)]
    lengths = np.sqrt(((offs * spacing) ** 2).sum(axis=1))
    assert np.all(np.diff(lengths) >= 0) and lengths.max() <= 1.0


def test_score_labels_matches_per_organ_metrics_and_edge_cases():
    rng = np.random.default_rng(5)
    shape = (14, 20, 22)
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    gt[blob(rng, shape)] = 1
    pred[blob(rng, shape)] = 1
    gt[2:6, 3:9, 4:10] = 3  # spleen only in the ground truth...
    pred[8:12, 10:15, 12:20] = 4  # ...pancreas only in the prediction; kidney in neither
    pred[0, 0, 0] = 9  # labels outside the scored ones are ignored
    spacing = (3.0, 0.75, 0.75)
    scores = score_labels(gt, pred, spacing)
    assert scores[2] == (1.0, 1.0)
    assert scores[3] == (0.0, 0.0)
    assert scores[4] == (0.0, 0.0)
    ref_dsc, ref_nsd = reference(gt == 1, pred == 1, spacing, 1.0)
    assert scores[1][0] == pytest.approx(ref_dsc, abs=1e-12)
    assert scores[1][1] == pytest.approx(ref_nsd, abs=1e-9)
    per_organ = score_labels(gt, pred, spacing, tolerance_mm=FLARE22_TOLERANCES_MM)
    assert per_organ[1][1] == pytest.approx(reference(gt == 1, pred == 1, spacing, 5.0)[1], abs=1e-9)
    with pytest.raises(ValueError, match="no tolerance"):
        score_labels(gt, pred, spacing, tolerance_mm={1: 1.0})
    with pytest.raises(ValueError, match="shapes differ"):
        score_labels(gt, pred[:-1], spacing)


@pytest.mark.parametrize("tol", [30.0, 60.0])
def test_huge_tolerances_use_the_distance_transform_and_agree(tol):
    gt = np.zeros((20, 24, 24), bool)
    gt[4:12, 5:15, 5:15] = True
    pred = np.roll(gt, 7, axis=2)
    pred[15:18, 2:5, 18:22] = True  # a far-away island
    expected = reference(gt, pred, (0.5, 0.5, 0.5), tol)[1]
    assert nsd(gt, pred, (0.5, 0.5, 0.5), tol) == pytest.approx(expected, abs=1e-9)
