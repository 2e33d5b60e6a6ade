"""The pelvis of the version-3 phantom: bones, hip joints, muscles, bladder, rectum, sex organs, iliac and femoral
vessels, in LPS patient millimetres (+x left, +y posterior, +z superior; z = 0 at L1/L2 as in phantom_anatomy).

`draw_pelvis` draws one patient's pelvis from the trunk's parameters (a phantom_anatomy dict); `paint_pelvis` paints
it into a tissue slab (version-3 tissue ids, phantom/hu_table.py), only where `free` (the voxels no labelled
organ holds) is true, so no pelvic structure ever overlaps a FLARE organ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.hu_table import TISSUE_ID_V3 as T
from phantom.shapes import Slab, ellipsoid, frame, paint, tube

Tube = tuple[np.ndarray, np.ndarray]  # (M, 3) points xyz mm, (M,) radii mm
Ellipsoid = tuple[tuple, tuple, np.ndarray | None]  # centre, semi-axes, rows (or None: axis-aligned)


@dataclass(frozen=True)
class Pelvis:
    """One patient's pelvis. z_s1: sacral promontory; head: the right and left femoral-head centres (xyz mm)."""

    z_s1: float
    head: tuple[np.ndarray, np.ndarray]
    r_head: float
    sacrum: tuple[Ellipsoid, ...]
    wings: tuple[Ellipsoid, Ellipsoid]
    bone_tubes: tuple[Tube, ...]  # pubic and ischial rami, femoral necks and shafts
    bone_blobs: tuple[Ellipsoid, ...]  # trochanters, ischial tuberosities
    muscles: tuple[Ellipsoid, ...]  # gluteal, iliacus (ellipsoids)
    iliopsoas: tuple[Tube, Tube]
    arteries: tuple[Tube, Tube]
    veins: tuple[Tube, Tube]
    bladder: Ellipsoid
    excretion_level: float | None  # fraction of the bladder's depth filled by layering contrast, None: none
    rectum: Tube
    sex_tissue: str  # "uterus" (with the ovaries) or "prostate" (with the seminal vesicles)
    sex_organs: tuple[Ellipsoid, ...]

    @property
    def z_symphysis(self) -> float:
        return float(self.head[0][2] - 20)

    @property
    def z_lesser_trochanter(self) -> float:
        return float(self.head[0][2] - 60)


def draw_pelvis(rng: np.random.Generator, a: dict) -> Pelvis:
    """A pelvis fitted to the trunk `a` (phantom_anatomy.draw_anatomy's dict)."""
    u = rng.uniform
    ys, rvy = a["ys"], a["rv"][1]
    z_s1 = float(a["z0v"] - 3.5 * a["period"] + u(-10, 5))
    hz, hy, hx = z_s1 - u(110, 130), u(-25, 0), u(82, 98)
    heads = tuple(np.array([s * hx, hy, hz]) for s in (-1.0, 1.0))
    r_head = u(21, 25)
    sacrum = tuple(
        (
            (0.0, ys + 5 + 45 * t**1.5, z_s1 - 10 - 110 * t),
            (50 - 38 * t, 18 - 9 * t, 16.0),
            frame((0.0, -0.3 - 0.6 * t, 1.0), (1.0, 0.0, 0.0)),
        )
        for t in np.linspace(0.0, 1.0, 6)
    )
    wings = tuple(
        (
            (s * u(72, 86), ys - u(35, 45), z_s1 - u(15, 30)),
            (u(7, 10), u(55, 65), u(45, 55)),
            frame((s * 0.45, 0.1, 1.0), (s * 1.0, -0.45, 0.0)),
        )
        for s in (-1.0, 1.0)
    )
    y_sym = hy - u(50, 60)
    tubes, blobs, muscles = [], [], []
    for h in heads:
        s = float(np.sign(h[0]))
        sym = np.array([s * 8, y_sym, hz - 20])
        tub = np.array([s * 55, hy + 45, hz - 45])
        troch = h + (s * 42, 5, -28)
        tubes += [
            (np.array([h + (-s * 22, -15, -5), sym]), np.array([9.0, 8.0])),  # superior pubic ramus
            (np.array([sym + (0, 5, -15), tub]), np.array([7.0, 8.0])),  # inferior ramus
            (np.array([h + (0, 22, -12), tub]), np.array([12.0, 10.0])),  # ischium
            (np.array([h, troch]), np.array([14.0, 15.0])),  # femoral neck
            (np.array([troch, h + (s * 30, 5, -400)]), np.array([15.0, 13.0])),  # femoral shaft
        ]
        blobs += [
            (tuple(troch + (s * 6, 3, 5)), (15, 20, 24), None),
            (tuple(h + (s * 18, 16, -60)), (10, 10, 12), None),
        ]
        muscles += [
            ((s * 70, a["Bp"] - u(35, 45), hz + 5), (u(55, 70), u(30, 40), u(80, 100)), None),  # gluteus maximus
            ((s * (hx + 25), ys - 15, z_s1 - 45), (u(18, 25), u(45, 55), u(45, 60)), None),  # gluteus medius
            ((s * 58, ys - 35, z_s1 - 35), (u(12, 16), u(40, 48), u(40, 50)), None),  # iliacus
        ]
    iliopsoas = tuple(
        (
            np.array([(s * (a["rv"][0] + 18), ys, z_s1 + 40), (s * 62, hy - 30, hz + 25), h + (s * 8, -30, -40)]),
            np.array([20.0, 18.0, 15.0]),
        )
        for s, h in zip((-1.0, 1.0), heads, strict=True)
    )
    arteries, veins = _pelvic_vessels(a, heads, z_s1)
    bladder, excretion = _bladder(rng, hy, y_sym, hz)
    sex_tissue, sex_organs = _sex_organs(rng, bladder)
    rectum = (
        np.array([(u(-15, 15), ys - rvy - 15, z_s1 - 35), (0, ys + 10, z_s1 - 85), (0, hy + 30, hz - 45)]),
        np.full(3, u(12, 24)),
    )
    return Pelvis(
        z_s1=z_s1,
        head=heads,
        r_head=r_head,
        sacrum=sacrum,
        wings=wings,
        bone_tubes=tuple(tubes),
        bone_blobs=tuple(blobs),
        muscles=tuple(muscles),
        iliopsoas=iliopsoas,
        arteries=arteries,
        veins=veins,
        bladder=bladder,
        excretion_level=excretion,
        rectum=rectum,
        sex_tissue=sex_tissue,
        sex_organs=sex_organs,
    )


def _pelvic_vessels(a: dict, heads, z_s1: float) -> tuple[tuple[Tube, Tube], tuple[Tube, Tube]]:
    """Common and external iliac arteries and veins down to the femoral vessels, both sides."""
    bif = a["aorta"][0][-1]
    conf = a["ivc"][0][0]
    arteries, veins = [], []
    for h in heads:
        s = float(np.sign(h[0]))
        path = [(s * 35, bif[1] + 5, z_s1 - 5), (s * 55, bif[1] - 10, z_s1 - 50), h + (-s * 10, -35, 20)]
        path.append(h + (-s * 5, -40, -90))
        arteries.append((np.array([bif, *path]), np.array([7.0, 6.5, 5.5, 5.0, 4.5])))
        vpath = [np.asarray(p) + (-s * 8, 8, 0) for p in path]
        veins.append((np.array([conf, *vpath]), np.array([9.0, 8.0, 7.0, 6.5, 6.0])))
    return tuple(arteries), tuple(veins)


def _bladder(rng: np.random.Generator, hy: float, y_sym: float, hz: float) -> tuple[Ellipsoid, float | None]:
    """The bladder above and behind the symphysis, empty to full; the layering contrast's depth fraction."""
    f = rng.uniform()
    ax = (20 + 40 * f, 15 + 30 * f, 12 + 40 * f)
    c = (rng.uniform(-10, 10), y_sym + 12 + ax[1], hz - 15 + 0.8 * ax[2])
    excretion = rng.uniform(0.1, 0.6) if rng.random() < 0.7 else None
    return (c, ax, None), excretion


def _sex_organs(rng: np.random.Generator, bladder: Ellipsoid) -> tuple[str, tuple[Ellipsoid, ...]]:
    """A uterus and ovaries behind and above the bladder, or a prostate below it and seminal vesicles behind it."""
    (cx, cy, cz), (ax, ay, az), _ = bladder
    u = rng.uniform
    if rng.random() < 0.5:
        uterus = ((cx, cy + ay + u(10, 20), cz + 0.5 * az), (u(25, 35), u(18, 25), u(35, 45)))
        rows = frame((0.0, -0.6, 1.0), (1.0, 0.0, 0.0))
        ovaries = tuple(((s * u(35, 45), cy + ay, cz + 0.3 * az), (12, 9, 15), None) for s in (-1, 1))
        return "uterus", ((*uterus, rows), *ovaries)
    prostate = ((cx, cy - 0.3 * ay, cz - az - u(12, 18)), (u(17, 23), u(13, 17), u(14, 18)), None)
    vesicles = tuple(
        ((s * 18, cy + ay + 4, cz - 0.6 * az), (18, 6, 8), frame((0, 0.3, 1.0), (s * 1.0, 0, 0))) for s in (-1, 1)
    )
    return "prostate", (prostate, *vesicles)


def paint_pelvis(tissue: np.ndarray, slab: Slab, p: Pelvis, free: np.ndarray, body: np.ndarray) -> None:
    """Paint the pelvis into `tissue` (version-3 ids) where `free & body` (bool, the slab's shape)."""
    ok = free & body
    for c, ax, rows in p.muscles:
        e = ellipsoid(slab, c, ax, rows)
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["muscle"], ok)
    for pts, rad in p.iliopsoas:
        t = tube(slab, pts, rad)
        if t is not None:
            paint(tissue, t[0], t[1] < 1, T["muscle"], ok)
    _paint_hollow_organs(tissue, slab, p, ok)
    for key, tid in (("veins", "ivc"), ("arteries", "aorta")):
        for pts, rad in getattr(p, key):
            t = tube(slab, pts, rad)
            if t is not None:
                paint(tissue, t[0], t[1] < 1, T[tid], ok)
    _paint_bones(tissue, slab, p, ok)


def _paint_hollow_organs(tissue: np.ndarray, slab: Slab, p: Pelvis, ok: np.ndarray) -> None:
    """Sex organs, rectum (wall, stool and gas), bladder (wall, urine, layering excreted contrast)."""
    for c, ax, rows in p.sex_organs:
        e = ellipsoid(slab, c, ax, rows)
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T[p.sex_tissue], ok)
    t = tube(slab, *p.rectum)
    if t is not None:
        r, rho = t
        paint(tissue, r, rho < 1, T["bowel_wall"], ok)
        paint(tissue, r, rho < 0.8, T["stool"], ok)
        paint(tissue, r, (rho < 0.5) & (slab.qy[r] < p.rectum[0][1][1]), T["gas"], ok)
    c, ax, _ = p.bladder
    e = ellipsoid(slab, c, ax)
    if e is None:
        return
    r, d, r2 = e
    paint(tissue, r, r2 < 1, T["bowel_wall"], ok)
    inner = r2 < (1 - 3 / min(ax)) ** 2
    paint(tissue, r, inner, T["urine"], ok)
    if p.excretion_level is not None:  # contrast is denser than urine: it layers posteriorly (dependent, supine)
        level = ax[1] * (1 - 2 * p.excretion_level)
        paint(tissue, r, inner & (d[1] > level), T["urine_excreted"], ok)


def _paint_bones(tissue: np.ndarray, slab: Slab, p: Pelvis, ok: np.ndarray) -> None:
    """Sacrum, iliac wings, acetabula, femoral heads, necks and shafts, rami, trochanters: cortex round marrow."""

    def shell(e, inner: float) -> None:
        if e is not None:
            r, _, r2 = e
            paint(tissue, r, r2 < 1, T["bone_cortex"], ok)
            paint(tissue, r, r2 < inner, T["bone_marrow"], ok)

    for c, ax, rows in (*p.sacrum, *p.wings, *p.bone_blobs):
        shell(ellipsoid(slab, c, ax, rows), 0.55)
    for pts, rad in p.bone_tubes:
        t = tube(slab, pts, rad)
        if t is not None:
            paint(tissue, t[0], t[1] < 1, T["bone_cortex"], ok)
            paint(tissue, t[0], t[1] < 0.6, T["bone_marrow"], ok)
    for h in p.head:
        s = float(np.sign(h[0]))
        e = ellipsoid(slab, h, (p.r_head * 1.45,) * 3)
        if e is not None:  # the acetabulum: a bony cup over the head's medial and upper side
            r, d, r2 = e
            cup = (r2 > (1.08 / 1.45) ** 2) & (r2 < 1) & ((s * d[0] < 0.3 * p.r_head) | (d[2] > 0))
            paint(tissue, r, cup, T["bone_cortex"], ok)
        shell(ellipsoid(slab, h, (p.r_head,) * 3), 0.7)
