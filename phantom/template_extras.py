"""Anatomy that real label maps leave unlabelled, painted into a template's unlabelled voxels (generator version 4).

Manual abdominal label maps (WORD, BTCV, AMOS) label organs but not the spine, the great vessels (WORD), the psoas
muscles or the lung bases, so a synthetic case made from them alone shows fat where a scan shows bone, muscle, blood
and lung. These functions add them on the template's own grid, once per template, only where the map holds 0:

- a vertebral column (body, disc, arch, canal, paraspinal muscles): from the aorta where the map has one (as
  version 3 does), else between the kidneys (the vertebral body's centre lies level with the kidneys' centres,
  measured on the TotalSegmentator map of TSEX_0002: 0-7 mm apart in x and y);
- the aorta and inferior vena cava in front of the spine where the map has no aorta, down to 40 mm below the lower
  kidney poles (the bifurcation at L4);
- both psoas muscles beside the spine, from the kidneys' middle downwards, widening caudally;
- the lung bases: unlabelled voxels inside the rib cage above the level where the liver and spleen are widest,
  once their cross-section has fallen below 70 % of that width.

`organ_depth` gives each voxel of the kidneys and of the gut (stomach, duodenum, bowel, colon, rectum, esophagus)
its distance (mm) to its organ's surface, from which a case draws the kidney's medulla (corticomedullary
differentiation in the arterial phase) and the gut's wall round its content.

Arrays are numpy zyx on the template grid; world coordinates LPS mm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt

# extra class ids of version 4, below phantom.templates' version 2-3 extras
GUT_WALL_X, LUNG_X, BOWEL_X, BOWEL_WALL_X, IVC_X, AORTA_X, PSOAS_X, MEDULLA_X = 232, 233, 234, 235, 236, 237, 238, 239
GUT_WORDS = ("stomach", "duodenum", "bowel", "colon", "rectum", "esophagus")
EXTRA_TISSUE_V4 = {
    GUT_WALL_X: "bowel_wall",
    LUNG_X: "lung",
    BOWEL_X: "bowel_content",
    BOWEL_WALL_X: "bowel_wall",
    IVC_X: "ivc",
    AORTA_X: "aorta",
    PSOAS_X: "muscle",
    MEDULLA_X: "kidney_medulla",
}
EXTRA_LABEL_V4 = {MEDULLA_X: 2}
# version 5: fat between the lobules of a gut segment painted like the pancreas (FLARE label 0, see from_labels.py)
GUT_FAT_X = 241

WorldXY = Callable[[int], tuple[np.ndarray, np.ndarray]]


def _ids(names: dict[int, str], *words: str) -> list[int]:
    return [i for i, n in names.items() if any(w in n for w in words)]


def _centroids(classes: np.ndarray, ids: Sequence[int], world_xy: WorldXY, min_voxels: int = 20) -> list:
    """Per slice: None or the world (x, y) mm centroid of the voxels of `ids`."""
    out: list = [None] * classes.shape[0]
    has = np.isin(classes, ids).sum(axis=(1, 2)) >= min_voxels
    for k in np.nonzero(has)[0]:
        m = np.isin(classes[k], ids)
        wx, wy = world_xy(int(k))
        out[k] = (float(wx[m].mean()), float(wy[m].mean()))
    return out


def _fill_nearest(values: list) -> list:
    """Each None replaced by the nearest slice's value; all None stays all None."""
    have = [k for k, v in enumerate(values) if v is not None]
    if not have:
        return values
    return [values[min(have, key=lambda h: abs(h - k))] for k in range(len(values))]


def kidney_body_centres(classes: np.ndarray, names: dict[int, str], world_xy: WorldXY) -> list | None:
    """Vertebral body centres (x, y) mm per slice from the two kidneys (their midpoint, 3 mm behind it), slices
    without both kidneys taking the nearest slice's; None when no slice holds both."""
    left = _centroids(classes, _ids(names, "kidney_left"), world_xy)
    right = _centroids(classes, _ids(names, "kidney_right"), world_xy)
    both = [
        ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 3.0) if a is not None and b is not None else None
        for a, b in zip(left, right)
    ]
    if all(c is None for c in both):
        return None
    return _fill_nearest(both)


def _superior_order(direction_zz: float, nz: int) -> np.ndarray:
    """Slice indices from the most superior to the most inferior."""
    return np.arange(nz)[::-1] if direction_zz > 0 else np.arange(nz)


def _kidney_rows(classes: np.ndarray, names: dict[int, str]) -> np.ndarray:
    return np.nonzero(np.isin(classes, _ids(names, "kidney")).any(axis=(1, 2)))[0]


def paint_vessels(
    classes: np.ndarray, names: dict[int, str], world_xy: WorldXY, centres: list, direction_zz: float, spacing_z: float
) -> None:
    """Aorta and IVC (in place, into 0 voxels) in front of the vertebral bodies `centres`, from the top slice down to
    40 mm below the lowest kidney slice."""
    rows = _kidney_rows(classes, names)
    order = _superior_order(direction_zz, classes.shape[0])
    if rows.size:
        lowest = order[np.isin(order, rows)][-1]
        stop = int(np.nonzero(order == lowest)[0][0] + round(40.0 / spacing_z))
    else:
        stop = len(order)
    for k in order[:stop]:
        cx, cy = centres[k]
        wx, wy = world_xy(int(k))
        free = classes[k] == 0
        aorta = ((wx - (cx + 12.0)) ** 2 + (wy - (cy - 32.0)) ** 2 < 11.0**2) & free
        ivc = (((wx - (cx - 22.0)) / 12.0) ** 2 + ((wy - (cy - 30.0)) / 9.0) ** 2 < 1) & free
        classes[k][aorta] = AORTA_X
        classes[k][ivc] = IVC_X


def paint_psoas(
    classes: np.ndarray, names: dict[int, str], world_xy: WorldXY, centres: list, direction_zz: float, spacing_z: float
) -> None:
    """Both psoas muscles (in place, into 0 voxels) beside the vertebral bodies, from the kidneys' middle slice
    downwards: radius 6 mm growing to 22 mm over 150 mm, centre moving out with it."""
    rows = _kidney_rows(classes, names)
    if not rows.size:
        return
    order = _superior_order(direction_zz, classes.shape[0])
    mid = int(rows[len(rows) // 2])
    start = int(np.nonzero(order == mid)[0][0])
    for n, k in enumerate(order[start:]):
        r = 6.0 + 16.0 * min(1.0, n * spacing_z / 150.0)
        cx, cy = centres[k]
        wx, wy = world_xy(int(k))
        free = classes[k] == 0
        for side in (-1.0, 1.0):
            m = ((wx - (cx + side * (18.0 + r))) ** 2 + ((wy - (cy + 2.0)) / 1.15) ** 2 < r**2) & free
            classes[k][m] = PSOAS_X


def paint_lung_bases(
    classes: np.ndarray, names: dict[int, str], inside_ribs: Callable[[int], np.ndarray], direction_zz: float
) -> None:
    """Lung (in place, into 0 voxels inside the rib cage, `inside_ribs(k)` -> bool (ny, nx)) on the slices above the
    level where liver + spleen are widest, once their area has fallen below 70 % of the widest."""
    ids = _ids(names, "liver", "spleen")
    if not ids:
        return
    area = np.isin(classes, ids).sum(axis=(1, 2))
    if area.max() < 50:
        return
    order = _superior_order(direction_zz, classes.shape[0])
    peak = int(np.argmax(area[order]))
    for k in order[:peak][::-1]:  # from the widest level upwards
        if area[k] < 0.7 * area.max():
            m = (classes[k] == 0) & inside_ribs(int(k))
            classes[k][m] = LUNG_X


def organ_depth(classes: np.ndarray, names: dict[int, str], spacing_xyz: np.ndarray) -> np.ndarray:
    """uint8 (zyx, template grid): each voxel of a kidney or gut class (GUT_WORDS) at its distance to that class's
    surface in mm (clipped to 255), 0 elsewhere."""
    depth = np.zeros(classes.shape, np.uint8)
    for cid in _ids(names, "kidney", *GUT_WORDS):
        m = classes == cid
        if not m.any():
            continue
        zz, yy, xx = np.nonzero(m)
        box = tuple(slice(max(0, a.min() - 1), a.max() + 2) for a in (zz, yy, xx))
        d = distance_transform_edt(m[box], sampling=tuple(spacing_xyz[::-1]))
        sub = depth[box]
        sub[m[box]] = np.clip(np.rint(d[m[box]]), 0, 255).astype(np.uint8)
    return depth
