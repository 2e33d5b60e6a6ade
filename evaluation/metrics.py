"""Dice similarity coefficient (DSC) and normalized surface Dice (NSD) as the FLARE 2021 organizers compute them.

All masks are numpy arrays in zyx order; spacings are (z, y, x) in mm, read from the ground truth's header.

NSD is the surface Dice at a tolerance (Nikolov et al. 2018) on surfels: surface elements on the voxel corners, weighted
by their area (see evaluation/surfels.py), with Euclidean distances under the anisotropic spacing::

    NSD = (area(gt surfels within tol of pred surface) + area(pred surfels within tol of gt surface))
          / (area(gt surfels) + area(pred surfels))

It gives the same numbers as DeepMind's ``surface_distance.compute_surface_dice_at_tolerance`` (which the
organizers' SurfaceDice.py copies) but only asks, for each surfel, whether any surfel of the other surface
lies within the tolerance: it gathers the other surface at the few integer offsets whose length (computed with
the very expression scipy's distance transform uses) is at most the tolerance, instead of a full distance
transform and a Python sort. Where too many offsets remain for that to pay (large tolerances, far-apart
surfaces) it falls back to scipy's Euclidean distance transform on the union's bounding box, as the reference
does. No surfel of either mask lies outside the corners of the union's bounding box, so that box (plus its
outer layer of corners) is all the work needs: growing it by the tolerance would add only empty corners.

Edge cases, as the organizers score them: both masks empty gives DSC = NSD = 1; ground truth empty and
prediction not gives 0 and 0; prediction empty and ground truth not gives 0 and 0.

Surface distances in two stages, as DeepMind's package: ``surface_distances`` computes every surfel's distance to
the other surface once (a distance transform), and ``hausdorff_distance`` (HD95), ``average_surface_distance`` and
``surface_dice`` read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from evaluation.surfels import cached_area_table, neighbour_codes
from evaluation.task import ORGANS

FLARE21_TOLERANCE_MM = 1.0
FLARE22_TOLERANCES_MM: dict[int, float] = {1: 5.0, 2: 3.0, 3: 3.0, 4: 5.0}

# A gather of one (surfel, offset) pair costs about this many times less than an EDT per voxel.
_GATHER_TO_EDT_COST = 10
# Beyond this many candidate offsets (huge tolerances in voxels) the distance transform is used directly.
_MAX_OFFSET_CANDIDATES = 200_000


def _check_masks(gt: np.ndarray, pred: np.ndarray) -> None:
    for name, arr in (("gt", gt), ("pred", pred)):
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, not {type(arr).__name__}")
        if arr.dtype != np.bool_:
            raise ValueError(f"{name} must be a bool array, not {arr.dtype}")
        if arr.ndim != 3:
            raise ValueError(f"{name} must be 3D (z, y, x), got shape {arr.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred shapes differ: {gt.shape} vs {pred.shape}")


def _check_spacing(spacing_zyx_mm: Sequence[float]) -> tuple[float, float, float]:
    spacing = tuple(float(s) for s in spacing_zyx_mm)
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing_zyx_mm must be three positive finite numbers, got {spacing_zyx_mm!r}")
    return spacing  # type: ignore[return-value]


def _check_tolerance(tolerance_mm: float) -> float:
    tol = float(tolerance_mm)
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tolerance_mm must be a finite number >= 0, got {tolerance_mm!r}")
    return tol


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    """Dice similarity coefficient 2|G n P| / (|G| + |P|) of two masks.

    Args:
        gt, pred: bool arrays of the same shape (z, y, x).

    Returns:
        DSC in [0, 1]; 1.0 when both masks are empty (the organizers' convention).
    """
    _check_masks(gt, pred)
    n_gt = int(np.count_nonzero(gt))
    n_pred = int(np.count_nonzero(pred))
    if n_gt + n_pred == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(gt & pred)) / (n_gt + n_pred)


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of a 3D bool mask as slices, or None if the mask is empty."""
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    sub = mask[zs[0] : zs[-1] + 1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return (slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))


def _union_bbox(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(s.start, t.start), max(s.stop, t.stop)) for s, t in zip(a, b, strict=True))


def tolerance_offsets(spacing_zyx_mm: Sequence[float], tolerance_mm: float) -> np.ndarray:
    """Integer corner offsets whose length in mm is at most the tolerance, nearest first.

    The length is computed as scipy.ndimage.distance_transform_edt computes distances
    (``sqrt(((dz*sz)**2 + (dy*sy)**2) + (dx*sx)**2)`` in float64), so that "within tolerance" agrees with the
    reference to the last bit.

    Returns:
        int64 array of shape (n, 3), offsets (dz, dy, dx), sorted by length; the first row is (0, 0, 0).
    """
    spacing = _check_spacing(spacing_zyx_mm)
    tol = _check_tolerance(tolerance_mm)
    radius = [int(math.floor(tol / s)) + 1 for s in spacing]
    grids = np.meshgrid(*[np.arange(-r, r + 1) for r in radius], indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    comps = [(offsets[:, i].astype(np.float64) * spacing[i]) ** 2 for i in range(3)]
    length = np.sqrt((comps[0] + comps[1]) + comps[2])
    keep = length <= tol
    order = np.argsort(length[keep], kind="stable")
    return offsets[keep][order]


def _within_by_gather(points: np.ndarray, other: np.ndarray, offsets: np.ndarray, budget: int) -> np.ndarray | None:
    """For flat corner indices ``points`` (into ``other``'s shape), whether ``other`` is True at any offset.

    Offsets are tried nearest first and resolved surfels leave the loop, so most surfels cost one or two
    gathers. Returns None if, after 1, 2, 4, 8, ... offsets, finishing would still cost more than ``budget``
    gathers (the caller then uses a distance transform).
    """
    radius = np.abs(offsets).max(axis=0)
    padded = np.pad(other, [(int(r), int(r)) for r in radius])
    coords = np.unravel_index(points, other.shape)
    flat = np.ravel_multi_index(tuple(c + int(r) for c, r in zip(coords, radius, strict=True)), padded.shape)
    flat_offsets = np.ravel_multi_index(tuple((offsets + radius).T), padded.shape) - np.ravel_multi_index(
        tuple(radius), padded.shape
    )
    padded_flat = padded.ravel()
    within = np.zeros(points.size, dtype=bool)
    remaining = np.arange(points.size)
    for k, off in enumerate(flat_offsets):
        if remaining.size == 0:
            break
        if budget < 0 or (k & (k - 1) == 0 and k > 0 and remaining.size * (len(flat_offsets) - k) > budget):
            return None
        hit = padded_flat[flat + off]
        within[remaining[hit]] = True
        keep = ~hit
        remaining = remaining[keep]
        flat = flat[keep]
    return within


def _within_by_edt(
    points: np.ndarray, other: np.ndarray, spacing: tuple[float, float, float], tol: float
) -> np.ndarray:
    dist = ndimage.distance_transform_edt(~other, sampling=spacing)
    return dist.ravel()[points] <= tol


def _nsd_in_box(gt_box: np.ndarray, pred_box: np.ndarray, spacing: tuple[float, float, float], tol: float) -> float:
    """NSD of two non-empty masks cropped to a box that holds both entirely (bool, zyx)."""
    code_gt = neighbour_codes(gt_box)
    code_pred = neighbour_codes(pred_box)
    border_gt = (code_gt != 0) & (code_gt != 255)
    border_pred = (code_pred != 0) & (code_pred != 255)
    pts_gt = np.flatnonzero(border_gt)
    pts_pred = np.flatnonzero(border_pred)
    areas = cached_area_table(*spacing)
    area_gt = areas[code_gt.ravel()[pts_gt]]
    area_pred = areas[code_pred.ravel()[pts_pred]]

    candidates = math.prod(2 * (int(math.floor(tol / s)) + 1) + 1 for s in spacing)
    if candidates <= _MAX_OFFSET_CANDIDATES:
        offsets = tolerance_offsets(spacing, tol)
        budget = _GATHER_TO_EDT_COST * border_gt.size
    else:
        offsets, budget = np.zeros((1, 3), dtype=np.int64), -1  # gather returns None at once: EDT
    within_gt = _within_by_gather(pts_gt, border_pred, offsets, budget)
    if within_gt is None:
        within_gt = _within_by_edt(pts_gt, border_pred, spacing, tol)
    within_pred = _within_by_gather(pts_pred, border_gt, offsets, budget)
    if within_pred is None:
        within_pred = _within_by_edt(pts_pred, border_gt, spacing, tol)

    overlap = float(np.sum(area_gt[within_gt])) + float(np.sum(area_pred[within_pred]))
    total = float(np.sum(area_gt)) + float(np.sum(area_pred))
    return overlap / total


def nsd(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    tolerance_mm: float = FLARE21_TOLERANCE_MM,
) -> float:
    """Normalized surface Dice of two masks at a tolerance, on surfels with the anisotropic spacing.

    Args:
        gt, pred: bool arrays of the same shape (z, y, x).
        spacing_zyx_mm: voxel spacing (z, y, x) in mm, from the ground truth's header.
        tolerance_mm: distance in mm within which a surfel counts as matched (FLARE 2021: 1 mm for every organ).

    Returns:
        NSD in [0, 1]: 1.0 if both masks are empty, 0.0 if exactly one of them is.
    """
    _check_masks(gt, pred)
    spacing = _check_spacing(spacing_zyx_mm)
    tol = _check_tolerance(tolerance_mm)
    box_gt, box_pred = _bbox(gt), _bbox(pred)
    if box_gt is None and box_pred is None:
        return 1.0
    if box_gt is None or box_pred is None:
        return 0.0
    box = _union_bbox(box_gt, box_pred)
    return _nsd_in_box(gt[box], pred[box], spacing, tol)


@dataclass(frozen=True)
class SurfaceDistances:
    """Every surfel of both surfaces with its distance (mm) to the nearest surfel of the other surface and its area
    (mm^2), each direction sorted by distance: what DeepMind's ``compute_surface_distances`` returns, from which
    :func:`hausdorff_distance`, :func:`average_surface_distance` and :func:`surface_dice` are computed.

    1D float64 arrays; a surfel of a mask whose partner mask is empty is at distance inf."""

    gt_to_pred_mm: np.ndarray
    pred_to_gt_mm: np.ndarray
    gt_areas_mm2: np.ndarray
    pred_areas_mm2: np.ndarray


def _sorted_by_distance(dist: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((area, dist))  # by distance, then area: the reference's order
    return dist[order], area[order]


def surface_distances(gt: np.ndarray, pred: np.ndarray, spacing_zyx_mm: Sequence[float]) -> SurfaceDistances:
    """The surfels of two masks and their distances to the other surface, computed once for several metrics.

    Args:
        gt, pred: bool arrays of the same shape (z, y, x).
        spacing_zyx_mm: voxel spacing (z, y, x) in mm, from the ground truth's header.

    Distances are Euclidean under the anisotropic spacing, from every surfel (a mixed voxel corner, see
    evaluation/surfels.py) to the nearest surfel of the other mask: scipy's distance transform on the union's
    bounding box, as the reference does."""
    _check_masks(gt, pred)
    spacing = _check_spacing(spacing_zyx_mm)
    boxes = [b for b in (_bbox(gt), _bbox(pred)) if b is not None]
    if not boxes:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    box = _union_bbox(*boxes) if len(boxes) == 2 else boxes[0]
    areas = cached_area_table(*spacing)
    border, area = {}, {}
    for name, mask in (("gt", gt), ("pred", pred)):
        code = neighbour_codes(mask[box])
        border[name] = (code != 0) & (code != 255)
        area[name] = areas[code[border[name]]]
    dist = {}
    for name, other in (("gt", "pred"), ("pred", "gt")):
        if border[other].any():
            dist[name] = ndimage.distance_transform_edt(~border[other], sampling=spacing)[border[name]]
        else:
            dist[name] = np.full(int(border[name].sum()), np.inf)
    gt_d, gt_a = _sorted_by_distance(dist["gt"], area["gt"])
    pred_d, pred_a = _sorted_by_distance(dist["pred"], area["pred"])
    return SurfaceDistances(gt_d, pred_d, gt_a, pred_a)


def _directed_percentile(dist: np.ndarray, area: np.ndarray, percent: float) -> float:
    """The ``percent``-th area-weighted percentile of sorted distances (the reference's rule)."""
    cumulative = np.cumsum(area) / np.sum(area)
    return float(dist[min(int(np.searchsorted(cumulative, percent / 100.0)), dist.size - 1)])


def hausdorff_distance(d: SurfaceDistances, percent: float = 95.0) -> float:
    """Robust Hausdorff distance in mm (HD95 by default): the larger of the two directed ``percent``-th
    percentiles of the surfels' distances, weighted by area (DeepMind's ``compute_robust_hausdorff``).

    0.0 when both masks are empty, inf when exactly one is."""
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"percent must lie in [0, 100], got {percent!r}")
    if d.gt_to_pred_mm.size == 0 and d.pred_to_gt_mm.size == 0:
        return 0.0
    if d.gt_to_pred_mm.size == 0 or d.pred_to_gt_mm.size == 0:
        return math.inf
    return max(
        _directed_percentile(d.gt_to_pred_mm, d.gt_areas_mm2, percent),
        _directed_percentile(d.pred_to_gt_mm, d.pred_areas_mm2, percent),
    )


def average_surface_distance(d: SurfaceDistances) -> float:
    """Average symmetric surface distance in mm: the mean distance of the surfels of both masks to the other
    surface, weighted by area (DeepMind's two directed averages, weighted by their surfaces' areas).

    0.0 when both masks are empty, inf when exactly one is."""
    total = float(np.sum(d.gt_areas_mm2)) + float(np.sum(d.pred_areas_mm2))
    if total == 0.0:
        return 0.0
    return (float(np.sum(d.gt_to_pred_mm * d.gt_areas_mm2)) + float(np.sum(d.pred_to_gt_mm * d.pred_areas_mm2))) / total


def surface_dice(d: SurfaceDistances, tolerance_mm: float = FLARE21_TOLERANCE_MM) -> float:
    """Normalized surface Dice at a tolerance from the distances: the value :func:`nsd` computes without them.

    1.0 when both masks are empty, 0.0 when exactly one is."""
    tol = _check_tolerance(tolerance_mm)
    total = float(np.sum(d.gt_areas_mm2)) + float(np.sum(d.pred_areas_mm2))
    if total == 0.0:
        return 1.0
    within = float(np.sum(d.gt_areas_mm2[d.gt_to_pred_mm <= tol])) + float(
        np.sum(d.pred_areas_mm2[d.pred_to_gt_mm <= tol])
    )
    return within / total


def _label_bboxes(labels: np.ndarray, wanted: Sequence[int]) -> dict[int, tuple[slice, ...] | None]:
    """Bounding boxes of the labels ``wanted`` (integers >= 1) of a zyx label map, or None for an absent label.

    One chunked pass per run of wanted labels that fits in 8 consecutive values (one pass for the organs 1-4):
    every voxel becomes one bit of a byte, and the boxes come from the OR of those bytes along each axis."""
    out: dict[int, tuple[slice, ...] | None] = {}
    pending = sorted({int(v) for v in wanted})
    if labels.dtype == np.uint8:  # a uint8 map holds no label above 255
        out |= dict.fromkeys((v for v in pending if v > 255), None)
        pending = [v for v in pending if v <= 255]
    while pending:
        # window [base, base + 8): from 0 for small labels (no subtraction); for uint8 maps at most 248, so that
        # values below the window wrap around to shifts of 8 or more (no bit)
        base = 0 if pending[0] < 8 else (min(pending[0], 248) if labels.dtype == np.uint8 else pending[0])
        out |= _window_bboxes(labels, base, [v for v in pending if v < base + 8])
        pending = [v for v in pending if v >= base + 8]
    return out


def _window_bboxes(labels: np.ndarray, base: int, group: list[int]) -> dict[int, tuple[slice, ...] | None]:
    """:func:`_label_bboxes` for labels in [base, base + 8): the bit of value v is 1 << (v - base)."""
    n_z = labels.shape[0]
    per_z = np.zeros(n_z, dtype=np.uint8)
    per_y = np.zeros(labels.shape[1], dtype=np.uint8)
    per_x = np.zeros(labels.shape[2], dtype=np.uint8)
    step = max(1, (1 << 22) // max(1, labels.shape[1] * labels.shape[2]))
    buf = np.empty((step, *labels.shape[1:]), dtype=np.uint8)
    one = np.uint8(1)
    for z0 in range(0, n_z, step):
        chunk = labels[z0 : z0 + step]
        bits = buf[: chunk.shape[0]]
        if chunk.dtype == np.uint8 and base == 0:
            np.left_shift(one, chunk, out=bits)
        elif chunk.dtype == np.uint8:
            np.left_shift(one, np.subtract(chunk, np.uint8(base), out=bits), out=bits)
        else:
            shift = chunk.astype(np.int64) - base
            shift[(shift < 0) | (shift > 7)] = 8  # no bit
            np.left_shift(one, shift.astype(np.uint8), out=bits)
        per_z[z0 : z0 + chunk.shape[0]] = np.bitwise_or.reduce(bits, axis=(1, 2))
        per_y |= np.bitwise_or.reduce(bits, axis=(0, 2))
        per_x |= np.bitwise_or.reduce(bits, axis=(0, 1))
    out: dict[int, tuple[slice, ...] | None] = {}
    for label in group:
        bit = np.uint8(1 << (label - base))
        idx = [np.flatnonzero(proj & bit) for proj in (per_z, per_y, per_x)]
        out[label] = None if idx[0].size == 0 else tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    return out


def labels_present(label_map: np.ndarray, labels: Sequence[int] = tuple(ORGANS)) -> set[int]:
    """The labels of ``labels`` (integers >= 1) that occur in a zyx integer label map."""
    return {label for label, box in _label_bboxes(label_map, [int(v) for v in labels]).items() if box is not None}


def score_labels(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    labels: Sequence[int] = tuple(ORGANS),
    tolerance_mm: float | Mapping[int, float] = FLARE21_TOLERANCE_MM,
) -> dict[int, tuple[float, float]]:
    """DSC and NSD of every label of a case, each computed only on its union bounding box.

    Args:
        gt_labels, pred_labels: integer label maps of the same shape (z, y, x) (uint8 in this project).
        spacing_zyx_mm: voxel spacing (z, y, x) in mm, from the ground truth's header.
        labels: the label values to score, integers >= 1.
        tolerance_mm: NSD tolerance in mm, one number for all labels or a mapping label -> tolerance
            (FLARE22: ``FLARE22_TOLERANCES_MM``).

    Returns:
        {label: (DSC, NSD)} with the organizers' edge cases.
    """
    return score_labels_present(gt_labels, pred_labels, spacing_zyx_mm, labels, tolerance_mm)[0]


def score_labels_present(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    labels: Sequence[int] = tuple(ORGANS),
    tolerance_mm: float | Mapping[int, float] = FLARE21_TOLERANCE_MM,
) -> tuple[dict[int, tuple[float, float]], set[int], set[int]]:
    """:func:`score_labels`'s scores, and the labels found in the ground truth and in the prediction.

    Same arguments; returns ({label: (DSC, NSD)}, labels in gt_labels, labels in pred_labels) at no extra cost
    (the bounding boxes that the scores need already say which labels occur). A label in neither map scores
    (1.0, 1.0), as the organizers score it; the two sets tell such a label from a perfect match.
    """
    for name, arr in (("gt_labels", gt_labels), ("pred_labels", pred_labels)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be a 3D integer numpy array (z, y, x)")
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"label map shapes differ: {gt_labels.shape} vs {pred_labels.shape}")
    spacing = _check_spacing(spacing_zyx_mm)
    labels = [int(v) for v in labels]
    if not all(v >= 1 for v in labels):
        raise ValueError(f"labels must be integers >= 1 (0 is the background), got {labels}")
    if isinstance(tolerance_mm, Mapping):
        missing = [v for v in labels if v not in tolerance_mm]
        if missing:
            raise ValueError(f"no tolerance given for labels {missing}")
        tols = {v: _check_tolerance(tolerance_mm[v]) for v in labels}
    else:
        tols = dict.fromkeys(labels, _check_tolerance(tolerance_mm))

    boxes_gt = _label_bboxes(gt_labels, labels)
    boxes_pred = _label_bboxes(pred_labels, labels)
    scores: dict[int, tuple[float, float]] = {}
    for label in labels:
        box_gt, box_pred = boxes_gt[label], boxes_pred[label]
        if box_gt is None and box_pred is None:
            scores[label] = (1.0, 1.0)
            continue
        if box_gt is None or box_pred is None:
            scores[label] = (0.0, 0.0)
            continue
        box = _union_bbox(box_gt, box_pred)
        gt_box = gt_labels[box] == label
        pred_box = pred_labels[box] == label
        n_gt, n_pred = int(np.count_nonzero(gt_box)), int(np.count_nonzero(pred_box))
        dsc = 2.0 * int(np.count_nonzero(gt_box & pred_box)) / (n_gt + n_pred)
        scores[label] = (dsc, _nsd_in_box(gt_box, pred_box, spacing, tols[label]))
    in_gt = {label for label in labels if boxes_gt[label] is not None}
    in_pred = {label for label in labels if boxes_pred[label] is not None}
    return scores, in_gt, in_pred
