"""Post-processing of the label maps: the paper's section 4.3 (keep the largest connected components of each
organ, FLARE's rule) and the default, which adds two anatomical checks to it.

Both rules label the components once (:func:`filter_components`: one cc3d pass over the foreground's bounding box
gives each component's label, size and height) and differ only in which components they keep (a :data:`Chooser`).

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ComponentTable:
    """The 26-connected components of a multilabel map, one labelling pass, indexed by component id (0: background).

    sizes: voxels per component (int64); owner: the label each component belongs to (uint8); z_mean, z_min: the
    mean and lowest canonical slice index (array axis 0, of the whole volume) of each component's voxels.
    """

    sizes: np.ndarray
    owner: np.ndarray
    z_mean: np.ndarray
    z_min: np.ndarray

    def ids(self, label: int) -> np.ndarray:
        """The ids of ``label``'s components, largest first (ties: lower id first)."""
        ids = np.flatnonzero(self.owner == label)
        ids = ids[ids > 0]
        return ids[np.argsort(-self.sizes[ids], kind="stable")]


Chooser = Callable[[ComponentTable], np.ndarray]
"""ComponentTable -> boolean array over component ids: which components survive."""


def filter_components(labels: np.ndarray, choose: Chooser) -> np.ndarray:
    """Label ``labels``' 26-connected components once (cc3d keeps components of different labels apart), restricted
    to the bounding box of the foreground; ``choose`` decides from their table which survive; the others are set to
    background. Returns a new (D, H, W) uint8 label map; the input is not modified.

    Args:
        labels: (D, H, W) uint8 label map (zyx).
        choose: see :data:`Chooser`.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D array, got shape {labels.shape}")
    labels = np.asarray(labels, dtype=np.uint8)
    box = foreground_box(labels)
    if box is None:
        return labels.copy()
    crop = np.array(labels[box], copy=True)  # a C-ordered copy: the input is not modified
    components, n = cc3d.connected_components(crop, connectivity=26, return_N=True)
    # Everything from the foreground voxels alone (a few % of the box): one scan finds them, and every later step
    # touches only them instead of the whole box. The component ids (up to 4 bytes per voxel of the box, the largest
    # array here) are let go of first, and the output is copied after: the two are never held together.
    where = np.flatnonzero(crop)
    fg_ids = components.ravel()[where]
    del components
    sizes = np.bincount(fg_ids, minlength=n + 1)
    owner = np.zeros(n + 1, dtype=np.uint8)
    owner[fg_ids] = crop.ravel()[where]
    z = where // (crop.shape[1] * crop.shape[2])  # each foreground voxel's slice in the box
    z_min = np.full(n + 1, crop.shape[0], dtype=np.int64)
    np.minimum.at(z_min, fg_ids, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_mean = np.bincount(fg_ids, weights=z, minlength=n + 1) / sizes + box[0].start
    table = ComponentTable(sizes.astype(np.int64), owner, z_mean, z_min + box[0].start)
    survive = np.asarray(choose(table), dtype=bool)
    survive[0] = True
    out = labels.copy()
    if not survive.all():
        crop.ravel()[where[~survive[fg_ids]]] = 0
        out[box] = crop
    return out


def largest(table: ComponentTable, keep: dict[int, int], survive: np.ndarray | None = None) -> np.ndarray:
    """Chooser of FLARE's rule: per label of ``keep``, its ``keep[label]`` largest components survive (of those
    ``survive`` has not already dropped); components of other labels all survive."""
    survive = np.ones(table.sizes.size, dtype=bool) if survive is None else survive.copy()
    for label, k in keep.items():
        ids = table.ids(label)
        survive[ids[survive[ids]][k:]] = False
    return survive


def keep_largest_components(labels: np.ndarray, keep: dict[int, int] | None = None) -> np.ndarray:
    """Keep, per label, its ``keep[label]`` largest 26-connected components; drop the rest to background. Labels
    not in ``keep`` are left untouched; an absent organ stays absent.

    Args:
        labels: (D, H, W) uint8 label map (zyx).
        keep: label -> number of components to keep; defaults to :data:`KEEP_COMPONENTS`.
    Returns:
        a new (D, H, W) uint8 label map.
    """
    keep = KEEP_COMPONENTS if keep is None else keep
    return filter_components(labels, lambda table: largest(table, keep))


def anatomy(table: ComponentTable, z_spacing_mm: float) -> np.ndarray:
    """Chooser of the anatomy rule (module docstring) for canonical label maps with slices ``z_spacing_mm`` apart."""
    survive = largest(table, {k: v for k, v in KEEP_COMPONENTS.items() if k not in (LIVER, SPLEEN)})
    liver = table.ids(LIVER)
    if liver.size:
        candidates = liver[table.sizes[liver] >= LIVER_MIN_FRACTION * table.sizes[liver[0]]]
        kept = candidates[np.argmax(table.z_mean[candidates])]  # ties: the larger
        survive[liver[liver != kept]] = False
        spleen = table.ids(SPLEEN)
        floor = table.z_min[kept] - SPLEEN_MARGIN_MM / z_spacing_mm
        survive[spleen[table.z_mean[spleen] < floor]] = False
    return largest(table, {SPLEEN: KEEP_COMPONENTS[SPLEEN]}, survive)


def postprocess(labels: np.ndarray, spacing_zyx: Sequence[float], rule: str = DEFAULT_RULE) -> np.ndarray:
    """The (D, H, W) uint8 label map (canonical orientation, zyx; voxel spacing ``spacing_zyx`` in mm, z y x)
    after ``rule`` (one of :data:`RULES`; see the module's docstring), as a new array."""
    if rule == "flare":
        return keep_largest_components(labels)
    if rule == "anatomy":
        return filter_components(labels, lambda table: anatomy(table, float(spacing_zyx[0])))
    if rule == "none":
        return np.array(labels, dtype=np.uint8, copy=True)
    raise ValueError(f"unknown post-processing rule {rule!r}; expected one of {', '.join(RULES)}")
