"""The pelvis of the version-3 phantom: bones, hip joints, muscles, bladder, rectum, sex organs, iliac and femoral
vessels, in LPS patient millimetres (+x left, +y posterior, +z superior; z = 0 at L1/L2 as in phantom/anatomy.py).

`draw_pelvis` draws one patient's pelvis from the trunk's parameters (an `Anatomy`); `paint_pelvis` paints it into a
tissue slab (version-3 tissue ids, phantom/hu_table.py), only where `free` (the voxels no labelled organ holds) is
true, so no pelvic structure ever overlaps a FLARE organ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.anatomy import Anatomy, Spine, Vessels
from phantom.hu_table import TISSUE_ID_V3 as T
from phantom.shapes import Ellipsoid, Slab, Tube, ellipsoid, frame, paint, tube


@dataclass(frozen=True)
class Pelvis:
    """One patient's pelvis (mm).

    promontory_z: z of the sacral promontory (the top of S1); femoral_heads: the right and left femoral-head
    centres (xyz); femoral_head_radius; sacrum: ellipsoids from S1 down to the coccyx; wings: the iliac wings;
    bone_tubes: pubic and ischial rami, femoral necks and shafts; bone_blobs: trochanters, ischial tuberosities;
    muscles: gluteal and iliacus ellipsoids; iliopsoas: both sides' tubes; arteries, veins: iliac and femoral
    vessels of both sides; bladder; excretion_level: the share of the bladder's depth filled by layering excreted
    contrast (None: none); rectum; sex_tissue: "uterus" (with the ovaries) or "prostate" (with the seminal
    vesicles), the tissue of every ellipsoid in sex_organs.
    """

    promontory_z: float
    femoral_heads: tuple[np.ndarray, np.ndarray]
    femoral_head_radius: float
    sacrum: tuple[Ellipsoid, ...]
    wings: tuple[Ellipsoid, Ellipsoid]
    bone_tubes: tuple[Tube, ...]
    bone_blobs: tuple[Ellipsoid, ...]
    muscles: tuple[Ellipsoid, ...]
    iliopsoas: tuple[Tube, Tube]
    arteries: tuple[Tube, Tube]
    veins: tuple[Tube, Tube]
    bladder: Ellipsoid
    excretion_level: float | None
    rectum: Tube
    sex_tissue: str
    sex_organs: tuple[Ellipsoid, ...]

    @property
    def hip_z(self) -> float:
        """z (mm) of the femoral heads' centres."""
        return self.femoral_heads[0][2]

    @property
    def z_symphysis(self) -> float:
        return float(self.hip_z - 20)

    @property
    def z_lesser_trochanter(self) -> float:
        return float(self.hip_z - 60)


@dataclass(frozen=True)
class _Hips:
    """Where the femoral heads lie: x (mm, either side), y, z of their centres; y of the pubic symphysis."""

    x: float
    y: float
    z: float
    y_symphysis: float


def draw_pelvis(rng: np.random.Generator, a: Anatomy) -> Pelvis:
    """A pelvis fitted to the trunk `a` (its spine, body and great vessels), drawn structure by structure."""
    u = rng.uniform
    spine = a.spine
    z_s1 = float(spine.disc_z - 3.5 * spine.level_height + u(-10, 5))
    hz, hy, hx = z_s1 - u(110, 130), u(-25, 0), u(82, 98)
    heads = tuple(np.array([s * hx, hy, hz]) for s in (-1.0, 1.0))
    r_head = u(21, 25)
    sacrum = _sacrum(spine, z_s1)
    wings = _draw_iliac_wings(rng, spine, z_s1)
    hips = _Hips(hx, hy, hz, hy - u(50, 60))
    tubes, blobs = _hip_bones(heads, hips)
    muscles = _draw_hip_muscles(rng, a, hips, z_s1)
    iliopsoas = _iliopsoas(spine, heads, hips, z_s1)
    arteries, veins = _pelvic_vessels(a.vessels, heads, z_s1)
    bladder, excretion = _bladder(rng, hy, hips.y_symphysis, hz)
    sex_tissue, sex_organs = _sex_organs(rng, bladder)
    rectum = _draw_rectum(rng, spine, hips, z_s1)
    return Pelvis(
        promontory_z=z_s1,
        femoral_heads=heads,
        femoral_head_radius=r_head,
        sacrum=sacrum,
        wings=wings,
        bone_tubes=tubes,
        bone_blobs=blobs,
        muscles=muscles,
        iliopsoas=iliopsoas,
        arteries=arteries,
        veins=veins,
        bladder=bladder,
        excretion_level=excretion,
        rectum=rectum,
        sex_tissue=sex_tissue,
        sex_organs=sex_organs,
    )


def _sacrum(spine: Spine, z_s1: float) -> tuple[Ellipsoid, ...]:
    """Six ellipsoids from S1 (at z_s1, mm) down and back to the coccyx, narrowing."""
    ys = spine.body_y
    return tuple(
        Ellipsoid(
            (0.0, ys + 5 + 45 * t**1.5, z_s1 - 10 - 110 * t),
            (50 - 38 * t, 18 - 9 * t, 16.0),
            frame((0.0, -0.3 - 0.6 * t, 1.0), (1.0, 0.0, 0.0)),
        )
        for t in np.linspace(0.0, 1.0, 6)
    )


def _draw_iliac_wings(rng: np.random.Generator, spine: Spine, z_s1: float) -> tuple[Ellipsoid, Ellipsoid]:
    """Right and left iliac wings: flat ellipsoids beside the sacrum, flaring outward and forward."""
    u = rng.uniform
    left, right = (
        Ellipsoid(
            (s * u(72, 86), spine.body_y - u(35, 45), z_s1 - u(15, 30)),
            (u(7, 10), u(55, 65), u(45, 55)),
            frame((s * 0.45, 0.1, 1.0), (s * 1.0, -0.45, 0.0)),
        )
        for s in (-1.0, 1.0)
    )
    return left, right


def _hip_bones(heads, hips: _Hips) -> tuple[tuple[Tube, ...], tuple[Ellipsoid, ...]]:
    """(tubes, blobs) of both sides: pubic rami, ischium, femoral neck and shaft; greater trochanter, tuberosity."""
    tubes, blobs = [], []
    hz = hips.z
    for h in heads:
        s = float(np.sign(h[0]))
        sym = np.array([s * 8, hips.y_symphysis, hz - 20])
        tub = np.array([s * 55, hips.y + 45, hz - 45])
        troch = h + (s * 42, 5, -28)
        tubes += [
            Tube(np.array([h + (-s * 22, -15, -5), sym]), np.array([9.0, 8.0])),  # superior pubic ramus
            Tube(np.array([sym + (0, 5, -15), tub]), np.array([7.0, 8.0])),  # inferior ramus
            Tube(np.array([h + (0, 22, -12), tub]), np.array([12.0, 10.0])),  # ischium
            Tube(np.array([h, troch]), np.array([14.0, 15.0])),  # femoral neck
            Tube(np.array([troch, h + (s * 30, 5, -400)]), np.array([15.0, 13.0])),  # femoral shaft
        ]
        blobs += [
            Ellipsoid(tuple(troch + (s * 6, 3, 5)), (15, 20, 24), None),
            Ellipsoid(tuple(h + (s * 18, 16, -60)), (10, 10, 12), None),
        ]
    return tuple(tubes), tuple(blobs)


def _draw_hip_muscles(rng: np.random.Generator, a: Anatomy, hips: _Hips, z_s1: float) -> tuple[Ellipsoid, ...]:
    """Gluteus maximus, gluteus medius and iliacus of the right, then of the left side."""
    u = rng.uniform
    ys, hx, hz = a.spine.body_y, hips.x, hips.z
    muscles = []
    for s in (-1.0, 1.0):
        muscles += [
            Ellipsoid((s * 70, a.body.back_depth - u(35, 45), hz + 5), (u(55, 70), u(30, 40), u(80, 100)), None),
            Ellipsoid((s * (hx + 25), ys - 15, z_s1 - 45), (u(18, 25), u(45, 55), u(45, 60)), None),  # medius
            Ellipsoid((s * 58, ys - 35, z_s1 - 35), (u(12, 16), u(40, 48), u(40, 50)), None),  # iliacus
        ]
    return tuple(muscles)


def _iliopsoas(spine: Spine, heads, hips: _Hips, z_s1: float) -> tuple[Tube, Tube]:
    """Both iliopsoas muscles, from beside the vertebral bodies to the lesser trochanters."""
    ys = spine.body_y
    right, left = (
        Tube(
            np.array(
                [
                    (s * (spine.body_radii[0] + 18), ys, z_s1 + 40),
                    (s * 62, hips.y - 30, hips.z + 25),
                    h + (s * 8, -30, -40),
                ]
            ),
            np.array([20.0, 18.0, 15.0]),
        )
        for s, h in zip((-1.0, 1.0), heads, strict=True)
    )
    return right, left


def _pelvic_vessels(vessels: Vessels, heads, z_s1: float) -> tuple[tuple[Tube, Tube], tuple[Tube, Tube]]:
    """Common and external iliac arteries and veins down to the femoral vessels, both sides: from the aorta's
    bifurcation and the IVC's confluence (the last and the first points of their centre lines)."""
    bif = vessels.aorta.points[-1]
    conf = vessels.ivc.points[0]
    arteries, veins = [], []
    for h in heads:
        s = float(np.sign(h[0]))
        path = [(s * 35, bif[1] + 5, z_s1 - 5), (s * 55, bif[1] - 10, z_s1 - 50), h + (-s * 10, -35, 20)]
        path.append(h + (-s * 5, -40, -90))
        arteries.append(Tube(np.array([bif, *path]), np.array([7.0, 6.5, 5.5, 5.0, 4.5])))
        vpath = [np.asarray(p) + (-s * 8, 8, 0) for p in path]
        veins.append(Tube(np.array([conf, *vpath]), np.array([9.0, 8.0, 7.0, 6.5, 6.0])))
    return (arteries[0], arteries[1]), (veins[0], veins[1])


def _bladder(rng: np.random.Generator, hy: float, y_sym: float, hz: float) -> tuple[Ellipsoid, float | None]:
    """The bladder above and behind the symphysis, empty to full; the layering contrast's depth fraction."""
    f = rng.uniform()
    ax = (20 + 40 * f, 15 + 30 * f, 12 + 40 * f)
    c = (rng.uniform(-10, 10), y_sym + 12 + ax[1], hz - 15 + 0.8 * ax[2])
    excretion = rng.uniform(0.1, 0.6) if rng.random() < 0.7 else None
    return Ellipsoid(c, ax, None), excretion


def _sex_organs(rng: np.random.Generator, bladder: Ellipsoid) -> tuple[str, tuple[Ellipsoid, ...]]:
    """A uterus and ovaries behind and above the bladder, or a prostate below it and seminal vesicles behind it."""
    (cx, cy, cz), (ax, ay, az), _ = bladder
    u = rng.uniform
    if rng.random() < 0.5:
        uterus = ((cx, cy + ay + u(10, 20), cz + 0.5 * az), (u(25, 35), u(18, 25), u(35, 45)))
        rows = frame((0.0, -0.6, 1.0), (1.0, 0.0, 0.0))
        ovaries = tuple(Ellipsoid((s * u(35, 45), cy + ay, cz + 0.3 * az), (12, 9, 15), None) for s in (-1, 1))
        return "uterus", (Ellipsoid(*uterus, rows), *ovaries)
    prostate = Ellipsoid((cx, cy - 0.3 * ay, cz - az - u(12, 18)), (u(17, 23), u(13, 17), u(14, 18)), None)
    vesicles = tuple(
        Ellipsoid((s * 18, cy + ay + 4, cz - 0.6 * az), (18, 6, 8), frame((0, 0.3, 1.0), (s * 1.0, 0, 0)))
        for s in (-1, 1)
    )
    return "prostate", (prostate, *vesicles)


def _draw_rectum(rng: np.random.Generator, spine: Spine, hips: _Hips, z_s1: float) -> Tube:
    """From in front of the sacrum's top down its curve to the anal canal between the ischia."""
    u = rng.uniform
    ys = spine.body_y
    points = np.array(
        [(u(-15, 15), spine.front_y - 15, z_s1 - 35), (0, ys + 10, z_s1 - 85), (0, hips.y + 30, hips.z - 45)]
    )
    return Tube(points, np.full(3, u(12, 24)))


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
    for vessels, tid in ((p.veins, "ivc"), (p.arteries, "aorta")):
        for pts, rad in vessels:
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
        paint(tissue, r, (rho < 0.5) & (slab.qy[r] < p.rectum.points[1][1]), T["gas"], ok)
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
    r_head = p.femoral_head_radius
    for h in p.femoral_heads:
        s = float(np.sign(h[0]))
        e = ellipsoid(slab, h, (r_head * 1.45,) * 3)
        if e is not None:  # the acetabulum: a bony cup over the head's medial and upper side
            r, d, r2 = e
            cup = (r2 > (1.08 / 1.45) ** 2) & (r2 < 1) & ((s * d[0] < 0.3 * r_head) | (d[2] > 0))
            paint(tissue, r, cup, T["bone_cortex"], ok)
        shell(ellipsoid(slab, h, (r_head,) * 3), 0.7)
