"""Post-processing of the paper's section 4.3: keep the largest connected components of each organ."""

from __future__ import annotations

import cc3d
import numpy as np

KEEP_COMPONENTS = {1: 1, 2: 3, 3: 1, 4: 1}
"""How many of the largest 26-connected components each label keeps: liver, spleen, pancreas one; kidney three."""


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
