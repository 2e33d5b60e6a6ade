"""Post-processing of the label maps: the paper's section 4.3 (keep the largest connected components of each
organ, FLARE's rule) and the default, which adds two anatomical checks to it.

Rules (:data:`RULES`), each a function of the (D, H, W) uint8 label map in canonical orientation (zyx, array z
towards the patient's head):

- ``flare``: the largest 26-connected component of liver, spleen and pancreas and the three largest of kidney.
- ``anatomy`` (the default): FLARE's rule for kidney and pancreas, and
  - the liver keeps the most cranial of its large components (at least :data:`LIVER_MIN_FRACTION` of the largest
    one's volume) instead of the largest. The liver lies under the right hemidiaphragm, above every other organ of
    the abdomen, so a liver-labelled blob of comparable size below it is something else: on scans that reach the
    pelvis a network may call the full urinary bladder liver, and when that blob is the largest, the FLARE rule
    keeps it and drops the liver;
  - the spleen keeps its largest component among those whose centroid lies no more than
    :data:`SPLEEN_MARGIN_MM` below the liver's lowest slice (all of them when there is no liver): the spleen lies
    in the left upper quadrant, beside the liver, and a "spleen" far below the liver is bowel. The margin keeps
    an enlarged spleen, whose centroid may sink below the liver's tip.
  When the liver is one dominant component and the spleen lies beside it, both rules give the same map.
- ``none``: the network's labels as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np

KEEP_COMPONENTS = {1: 1, 2: 3, 3: 1, 4: 1}
"""How many of the largest 26-connected components each label keeps: liver, spleen, pancreas one; kidney three."""

LIVER, SPLEEN = 1, 3
LIVER_MIN_FRACTION = 0.1
"""anatomy: liver components of at least this fraction of the largest one's voxels compete on height."""

SPLEEN_MARGIN_MM = 50.0
"""anatomy: how far (mm) below the liver's lowest slice a spleen component's centroid may lie."""

RULES = ("anatomy", "flare", "none")
DEFAULT_RULE = "anatomy"


def foreground_box(labels: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box (as slices) of labels > 0, or None if there is no foreground."""
    box = []
    for axis in range(labels.ndim):
        other = tuple(a for a in range(labels.ndim) if a != axis)
        nz = np.flatnonzero(labels.any(axis=other))
        if nz.size == 0:
            return None
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(box)


def keep_largest_components(labels: np.ndarray, keep: dict[int, int] | None = None) -> np.ndarray:
    """Keep, per label, its ``keep[label]`` largest 26-connected components; drop the rest to background.

    One labelling pass over the multilabel volume (cc3d keeps components of different labels apart), restricted to
    the bounding box of the foreground. Labels not in ``keep`` are left untouched; an absent organ stays absent.

    Args:
        labels: (D, H, W) uint8 label map (zyx).
        keep: label -> number of components to keep; defaults to :data:`KEEP_COMPONENTS`.
    Returns:
        a new (D, H, W) uint8 label map.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D array, got shape {labels.shape}")
    keep = KEEP_COMPONENTS if keep is None else keep
    out = np.array(labels, dtype=np.uint8, copy=True)
    box = foreground_box(out)
    if box is None:
        return out
    crop = np.ascontiguousarray(out[box])
    components, n = cc3d.connected_components(crop, connectivity=26, return_N=True)
    if n == 0:
        return out
    # Sizes and owners from the foreground voxels alone (a few % of the box): one scan finds them, and every later
    # step touches only them instead of the whole box.
    where = np.flatnonzero(crop)
    fg_ids = components.ravel()[where]
    sizes = np.bincount(fg_ids, minlength=n + 1)
    owner = np.zeros(n + 1, dtype=np.uint8)
    owner[fg_ids] = crop.ravel()[where]
    survive = np.ones(n + 1, dtype=bool)
    for label, k in keep.items():
        ids = np.flatnonzero(owner == label)
        ids = ids[ids > 0]
        if ids.size > k:
            order = ids[np.argsort(-sizes[ids], kind="stable")]
            survive[order[k:]] = False
    if survive.all():
        return out
    crop.ravel()[where[~survive[fg_ids]]] = 0
    out[box] = crop
    return out


def _components_of(labels: np.ndarray, label: int) -> tuple[np.ndarray, tuple[slice, ...] | None, np.ndarray, dict]:
    """(a uint8 copy of ``labels``, the bounding box of ``label`` (None when absent), ``label``'s 26-connected
    components inside that box (0 elsewhere), cc3d's statistics of them: voxel counts and centroids, index 0 the
    background, centroid coordinates in box array axes (0: z))."""
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D array, got shape {labels.shape}")
    out = np.array(labels, dtype=np.uint8, copy=True)
    box = foreground_box(out == label)
    if box is None:
        return out, None, np.zeros((0, 0, 0), np.uint32), {}
    components = cc3d.connected_components(out[box] == label, connectivity=26)
    return out, box, components, cc3d.statistics(components)


def keep_cranial_component(labels: np.ndarray, label: int, min_fraction: float = LIVER_MIN_FRACTION) -> np.ndarray:
    """Keep, of ``label``'s 26-connected components with at least ``min_fraction`` of the largest one's voxels,
    the one whose centroid lies highest along array axis 0 (canonical z, towards the head); drop its other
    components. Other labels are untouched; the input is not modified.

    Args:
        labels: (D, H, W) uint8 label map, canonical orientation (zyx, z increasing towards the head).
        label: the label to filter.
        min_fraction: in (0, 1]; 1 keeps the largest component (ties: the more cranial one).
    Returns:
        a new (D, H, W) uint8 label map.
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must lie in (0, 1], got {min_fraction}")
    out, box, components, stats = _components_of(labels, label)
    if box is None or len(stats["voxel_counts"]) < 3:  # absent, or one component
        return out
    sizes = stats["voxel_counts"][1:].astype(np.int64)
    height = stats["centroids"][1:, 0]
    candidates = np.flatnonzero(sizes >= min_fraction * sizes.max())
    keep = candidates[np.argmax(height[candidates])] + 1
    out[box][(components != keep) & (components > 0)] = 0
    return out


def drop_components_below(labels: np.ndarray, label: int, z: float) -> np.ndarray:
    """Drop ``label``'s 26-connected components whose centroid lies below canonical slice ``z`` (array axis 0
    index; lower is towards the feet). Other labels are untouched; the input is not modified.

    Args:
        labels: (D, H, W) uint8 label map, canonical orientation (zyx, z increasing towards the head).
        label: the label to filter.
        z: slice index (may be fractional); a centroid at exactly ``z`` stays.
    Returns:
        a new (D, H, W) uint8 label map.
    """
    out, box, components, stats = _components_of(labels, label)
    if box is None:
        return out
    low = np.flatnonzero(stats["centroids"][:, 0] + box[0].start < z)
    low = low[low > 0]
    if low.size:
        out[box][np.isin(components, low)] = 0
    return out


def postprocess(labels: np.ndarray, spacing_zyx: Sequence[float], rule: str = DEFAULT_RULE) -> np.ndarray:
    """The (D, H, W) uint8 label map (canonical orientation, zyx; voxel spacing ``spacing_zyx`` in mm, z y x)
    after ``rule`` (one of :data:`RULES`; see the module's docstring), as a new array."""
    if rule == "flare":
        return keep_largest_components(labels)
    if rule == "anatomy":
        others = {k: v for k, v in KEEP_COMPONENTS.items() if k not in (LIVER, SPLEEN)}
        out = keep_cranial_component(keep_largest_components(labels, others), LIVER)
        liver_z = np.flatnonzero((out == LIVER).any(axis=(1, 2)))
        if liver_z.size:
            out = drop_components_below(out, SPLEEN, liver_z[0] - SPLEEN_MARGIN_MM / float(spacing_zyx[0]))
        return keep_largest_components(out, {SPLEEN: KEEP_COMPONENTS[SPLEEN]})
    if rule == "none":
        return np.array(labels, dtype=np.uint8, copy=True)
    raise ValueError(f"unknown post-processing rule {rule!r}; expected one of {', '.join(RULES)}")
