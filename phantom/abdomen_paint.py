"""Painting version 2's abdomen: the tissue ids (phantom/tissues.py) of an `Anatomy` (phantom/anatomy.py) on a
`Slab`, one function per structure.

LPS patient millimetres (+x patient left, +y posterior, +z superior). Shapes are painted in order, later ones over
earlier ones, and abdominal organs are clipped to the abdominal cavity below the diaphragm. Version 3
(phantom/trunk.py) reuses these painters on its changed anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.anatomy import (
    Anatomy,
    Antrum,
    Body,
    Bowel,
    Diaphragm,
    Kidneys,
    Liver,
    Pancreas,
    Ribs,
    Spine,
    Stomach,
    Table,
    Vessels,
)
from phantom.shapes import Ellipsoid, Slab, Tube, ellipsoid, paint, tube
from phantom.tissues import TISSUE_ID as T


@dataclass(frozen=True)
class Fields:
    """Smooth random fields on a slab: float32 zyx arrays of the slab's shape, each ~N(0, 1).

    fine: texture; bowel1, bowel2: independent fields whose joint small values trace the small bowel's loops;
    fat, band (version 3, else None): the pancreas's fat lobules and the spleen's arterial arcs.
    """

    fine: np.ndarray
    bowel1: np.ndarray
    bowel2: np.ndarray
    fat: np.ndarray | None = None
    band: np.ndarray | None = None


@dataclass(frozen=True)
class Regions:
    """Masks (bool, the slab's shape) that later stages paint within.

    body: inside the skin; cavity: inside the abdominal wall's muscle ring; abd: the cavity below the diaphragm;
    thorax: the cavity above it (lungs); wall: the muscle ring itself (where the ribs run).
    """

    body: np.ndarray
    cavity: np.ndarray
    abd: np.ndarray
    thorax: np.ndarray
    wall: np.ndarray


def rasterize(a: Anatomy, slab: Slab, fields: Fields) -> np.ndarray:
    """uint8 tissue ids (zyx, the slab's shape) of anatomy `a` on `slab`; fields: the smooth fields on the slab."""
    tissue = np.zeros(slab.shape, np.uint8)
    paint_table(tissue, slab, a.table, a.body)
    reg = paint_body(tissue, slab, a.body, a.diaphragm)
    paint_thorax(tissue, slab, a.spine, a.heart, reg)
    paint_viscera(tissue, slab, a, fields, reg)
    paint_skeleton(tissue, slab, a, reg)
    return tissue


def body_norm(sq, A, Ba, Bp):
    """Normalized body contour value: < 1 inside. Anterior half an ellipse, posterior half flattened (y^4).

    sq: (qx^2, qy^2, qy < 0) of the slab; A: half-width, Ba, Bp: anterior and posterior depth (mm).
    """
    x2, y2, ant = sq
    ya = y2 * np.float32(1 / Ba**2)
    yp = y2 * np.float32(1 / Bp**2)
    return x2 * np.float32(1 / A**2) + np.where(ant, ya, yp * yp)


def diaphragm_z(qx, qy, d: Diaphragm):
    """Height z (mm) of the diaphragm above (x, y): two domes, lower laterally and posteriorly."""
    # the right dome higher than the left, blended across the midline (no step that would cut the liver in two)
    w = np.clip(0.5 - qx / np.float32(60), 0, 1)
    ztop = np.float32(d.left_dome_z) + np.float32(d.right_dome_z - d.left_dome_z) * w
    lat = (np.abs(qx) - 65) / 95
    ant = (qy + 20) / 110
    return ztop - 55 * lat * lat - 60 * ant * ant


def paint_table(tissue: np.ndarray, slab: Slab, table: Table, body: Body) -> None:
    """The table under the patient (undeformed), curving up at the sides."""
    full = (slice(None),) * 3
    y_t = body.back_depth - 4 + table.gap
    yy = slab.ys[None, :, None] + (slab.xs**2 / (2 * table.radius))[None, None, :]
    in_x = np.abs(slab.xs)[None, None, :] < 230
    t_mask = np.broadcast_to((yy > y_t) & (yy < y_t + 40) & in_x, slab.shape)
    paint(tissue, full, t_mask, T["table"])
    shell = ((yy > y_t) & (yy < y_t + 3)) | ((yy > y_t + 37) & (yy < y_t + 40))
    paint(tissue, full, np.broadcast_to(shell & in_x, slab.shape), T["table_shell"])


def paint_body(tissue: np.ndarray, slab: Slab, b: Body, diaphragm: Diaphragm) -> Regions:
    """Skin, subcutaneous fat, the wall's muscle and the visceral fat of a body of constant cross-section."""
    qx, qy = slab.qx, slab.qy
    A, Ba, Bp, tf = b.half_width, b.front_depth, b.back_depth, b.fat
    sq = (qx * qx, qy * qy, qy < 0)
    body = body_norm(sq, A, Ba, Bp) < 1
    tissue[body] = T["skin"]
    tissue[body_norm(sq, A - 2, Ba - 2, Bp - 2) < 1] = T["fat_subcutaneous"]
    inner = body_norm(sq, A - tf, Ba - tf, Bp - 0.5 * tf) < 1
    tissue[inner] = T["muscle"]
    Ac, Bac, Bpc = b.cavity
    cavity = body_norm(sq, Ac, Bac, Bpc) < 1
    return cavity_regions(tissue, slab, diaphragm, body, inner, cavity)


def cavity_regions(tissue, slab: Slab, diaphragm: Diaphragm, body, inner, cavity) -> Regions:
    """Fill the cavity with visceral fat below the diaphragm and muscle (the diaphragm) above it; the regions."""
    tissue[cavity] = T["fat_visceral"]
    zd = diaphragm_z(slab.qx, slab.qy, diaphragm)
    abd = cavity & (slab.qz < zd)
    thorax = cavity & (slab.qz > zd + 5)
    tissue[cavity & ~abd] = T["muscle"]  # diaphragm
    return Regions(body=body, cavity=cavity, abd=abd, thorax=thorax, wall=inner & ~cavity)


def paint_thorax(tissue: np.ndarray, slab: Slab, spine: Spine, heart: Ellipsoid, reg: Regions) -> None:
    """Lungs, mediastinum and heart above the diaphragm."""
    qx, qy = slab.qx, slab.qy
    ys, rvy = spine.body_y, spine.body_radii[1]
    thorax = reg.thorax
    tissue[thorax] = T["lung"]
    med = thorax & (np.abs(qx - 10) < 35 + 0.25 * np.maximum(ys - qy, 0)) & (qy < ys + rvy)
    tissue[med] = T["mediastinum"]
    e = ellipsoid(slab, *heart)
    if e is not None:
        paint(tissue, e[0], e[2] < 1, T["heart"], thorax)


def paint_viscera(tissue: np.ndarray, slab: Slab, a: Anatomy, fields: Fields, reg: Regions) -> None:
    """Everything inside the abdomen, in painting order: later stages paint over earlier ones."""
    abd = reg.abd
    paint_back_muscles(tissue, slab, a.spine, reg)
    paint_small_bowel(tissue, slab, a.bowel, a.spine, fields, abd)
    paint_colon(tissue, slab, a.bowel, fields, abd)
    paint_ellipsoid(tissue, slab, a.bladder, ((1.0, "bowel_wall"), (0.85, "urine")), abd)
    paint_stomach(tissue, slab, a.stomach, abd)
    paint_antrum(tissue, slab, a.stomach.antrum, a.stomach.content, abd)
    paint_duodenum(tissue, slab, a.bowel, abd)
    liver_mask = paint_liver(tissue, slab, a.liver, a.kidneys, a.spine, abd)
    for vessel in a.liver.vessels:
        paint_tube(tissue, slab, vessel, T["liver_vessel"], liver_mask)
    paint_ellipsoid(tissue, slab, a.gallbladder, ((1.0, "gallbladder"),), abd)
    paint_spleen(tissue, slab, a.spleen, abd)
    paint_pancreas(tissue, slab, a.pancreas, fields, abd)
    for vein in (a.vessels.splenic_vein, a.vessels.portal_vein):
        paint_tube(tissue, slab, vein, T["portal_vein"], abd)
    paint_kidneys(tissue, slab, a.kidneys, fields, abd)
    paint_great_vessels(tissue, slab, a.vessels, reg.cavity)


def paint_ellipsoid(
    tissue: np.ndarray, slab: Slab, shape: Ellipsoid | None, layers: tuple[tuple[float, str], ...], allowed
) -> None:
    """Paint `shape` (None: nothing) in layers (r2 bound, tissue name), outermost first, within `allowed`."""
    if shape is None:
        return
    e = ellipsoid(slab, *shape)
    if e is not None:
        for bound, name in layers:
            paint(tissue, e[0], e[2] < bound, T[name], allowed)


def paint_tube(tissue: np.ndarray, slab: Slab, t: Tube, tid: int, allowed: np.ndarray) -> None:
    """Paint the tube `t` with tissue id `tid` within `allowed`."""
    r = tube(slab, *t)
    if r is not None:
        paint(tissue, r[0], r[1] < 1, tid, allowed)


def paint_back_muscles(tissue: np.ndarray, slab: Slab, spine: Spine, reg: Regions) -> None:
    """Paraspinal muscles, quadratus lumborum and psoas (growing downward from L1) on both sides."""
    ys, rvx = spine.body_y, spine.body_radii[0]
    for side in (-1, 1):
        paraspinal = Ellipsoid((side * (0.5 * rvx + 22), spine.canal_y + 18, 0.0), (26, 22, 1e4))
        paint_ellipsoid(tissue, slab, paraspinal, ((1.0, "muscle"),), reg.body)
        quadratus = Ellipsoid((side * 72, ys + 42, -60.0), (20, 12, 110))
        paint_ellipsoid(tissue, slab, quadratus, ((1.0, "muscle"),), reg.abd)
        _paint_psoas(tissue, slab, spine, side, reg.abd)


def _paint_psoas(tissue: np.ndarray, slab: Slab, spine: Spine, side: int, abd: np.ndarray) -> None:
    """One psoas beside the vertebral bodies, its radius growing downward from z = 40 mm."""
    ys, rvx = spine.body_y, spine.body_radii[0]
    lo = (side * rvx - 60 if side < 0 else 0, ys - 40, spine.psoas_bottom_z)
    r = slab.region(lo, (0 if side < 0 else rvx + 60, ys + 40, 40))
    if r is not None:
        rx, ry, rz = slab.q(r)
        rad = np.clip(4 + 0.14 * (40 - rz), 0, 28)
        cx = side * (rvx + 0.8 * rad)
        m = ((rx - cx) ** 2 + ((ry - ys - 2) * 1.2) ** 2) < rad * rad
        paint(tissue, r, m, T["muscle"], abd)


def paint_small_bowel(tissue: np.ndarray, slab: Slab, bowel: Bowel, spine: Spine, fields: Fields, abd) -> None:
    """The tangle where the two bowel fields are both near zero, in front of the spine below small_bowel_top_z."""
    f1, f2 = fields.bowel1, fields.bowel2
    loops = abd & (slab.qz < bowel.small_bowel_top_z) & (slab.qy < spine.front_y + 5)
    rr = f1 * f1 + f2 * f2
    wall_rr, lumen_rr = bowel.small_bowel_rr
    tissue[loops & (rr < wall_rr)] = T["bowel_wall"]
    lumen = loops & (rr < lumen_rr)
    tissue[lumen] = _bowel_content(bowel)
    tissue[lumen & (fields.fine > bowel.gas_threshold)] = T["gas"]


def _bowel_content(bowel: Bowel) -> int:
    return T["oral_contrast"] if bowel.oral_contrast else T["bowel_content"]


def paint_colon(tissue: np.ndarray, slab: Slab, bowel: Bowel, fields: Fields, abd: np.ndarray) -> None:
    """The colon with haustra: wall, its content (bowel.colon_content) and gas where the fine field is high."""
    t = tube(slab, *bowel.colon)
    if t is None:
        return
    r, rho = t
    haustra = 1.0 + 0.08 * np.sin(slab.qz[r] * 0.25 + slab.qx[r] * 0.25)
    rho = rho * haustra
    paint(tissue, r, rho < 1, T["bowel_wall"], abd)
    inner = rho < 0.85
    paint(tissue, r, inner, bowel.colon_content, abd)
    paint(tissue, r, inner & (fields.fine[r] > bowel.gas_threshold - 0.8), T["gas"], abd)


def paint_stomach(tissue: np.ndarray, slab: Slab, stomach: Stomach, abd: np.ndarray) -> None:
    """The stomach's body with an air-fluid level (air rises anteriorly in a supine patient)."""
    c, ax, rows = stomach.body
    e = ellipsoid(slab, c, ax, rows)
    if e is None:
        return
    r, d, r2 = e
    paint(tissue, r, r2 < 1, T["stomach_wall"], abd)
    inner = r2 < (1 - 5 / min(ax)) ** 2
    paint(tissue, r, inner, stomach.content, abd)
    paint(tissue, r, inner & (slab.qy[r] < c[1] - stomach.air_level * ax[1]), T["gas"], abd)


def paint_antrum(tissue: np.ndarray, slab: Slab, antrum: Antrum | None, content: int, abd: np.ndarray) -> None:
    """Version 3 on: the antrum in front of the pancreas, to the duodenal bulb (wall, then its lumen's content)."""
    if antrum is None:
        return
    t = tube(slab, *antrum.tube)
    if t is not None:
        r, rho = t
        paint(tissue, r, rho < 1, T["stomach_wall"], abd)
        paint(tissue, r, rho < antrum.lumen, content, abd)


def paint_duodenum(tissue: np.ndarray, slab: Slab, bowel: Bowel, abd: np.ndarray) -> None:
    """The duodenum: wall, and the small bowel's content inside."""
    t = tube(slab, *bowel.duodenum)
    if t is not None:
        r, rho = t
        paint(tissue, r, rho < 1, T["bowel_wall"], abd)
        paint(tissue, r, rho < 0.7, _bowel_content(bowel), abd)


def paint_liver(
    tissue: np.ndarray, slab: Slab, liver: Liver, kidneys: Kidneys, spine: Spine, abd: np.ndarray
) -> np.ndarray:
    """The liver (and the perirenal fat it stays out of); returns the liver's mask."""
    qx, qy, qz = slab.qx, slab.qy, slab.qz
    ys, rvx = spine.body_y, spine.body_radii[0]
    liver_mask = np.zeros(slab.shape, bool)
    for lobe in (liver.right_lobe, liver.left_lobe):
        e = ellipsoid(slab, *lobe)
        if e is not None:
            liver_mask[e[0]] |= e[2] < 1
    liver_mask &= abd
    # the liver stays out of the prevertebral space and the fat around the kidneys (Gerota's fascia), and lies
    # anterolateral to the right kidney at the kidney's levels
    liver_mask &= ~((qy > spine.front_y - 12) & (np.abs(qx - 5) < rvx + 28))
    k_top = max(c[2] + 0.9 * ax[2] for c, ax, _ in kidneys.both)
    liver_mask &= ~((qy > ys + 30) & (qz < k_top))
    for c, ax, rows in kidneys.both:
        e = ellipsoid(slab, c, np.asarray(ax) + kidneys.perirenal_fat, rows)
        if e is not None:
            peri = e[2] < 1
            liver_mask[e[0]] &= ~peri
            paint(tissue, e[0], peri, T["fat_visceral"], abd)
    tissue[liver_mask] = T["liver"]
    return liver_mask


def paint_spleen(tissue: np.ndarray, slab: Slab, spleen: Ellipsoid, abd: np.ndarray) -> None:
    """The spleen: an ellipsoid hollowed at its hilum."""
    c, ax, rows = spleen
    e = ellipsoid(slab, c, ax, rows)
    if e is not None:
        r, d, r2 = e
        hil = (d[0] > 0.3 * ax[0]) & ((d[1] / ax[1]) ** 2 + (d[2] / ax[2]) ** 2 < 0.3)
        paint(tissue, r, (r2 < 1) & ~hil, T["spleen"], abd)


def paint_pancreas(tissue: np.ndarray, slab: Slab, pancreas: Pancreas, fields: Fields, abd: np.ndarray) -> None:
    """The pancreas, lobulated by bites into its surface where the fine field is high (no islands)."""
    t = tube(slab, *pancreas.centre_line)
    if t is not None:
        r, rho = t
        lob = rho * (1 + 0.08 * np.maximum(fields.fine[r], 0))
        paint(tissue, r, lob < 1, T["pancreas"], abd)


def paint_kidneys(tissue: np.ndarray, slab: Slab, kidneys: Kidneys, fields: Fields, abd: np.ndarray) -> None:
    """Kidneys: cortex, medulla (pyramids), sinus fat at the hilum."""
    for c, ax, rows in kidneys.both:
        e = ellipsoid(slab, c, ax, rows)
        if e is None:
            continue
        r, d, r2 = e
        notch = (d[0] > 0.55 * ax[0]) & (np.abs(d[2]) < 0.45 * ax[2])
        kid = (r2 < 1) & ~notch
        paint(tissue, r, kid, T["kidney_cortex"], abd)
        med = kid & (r2 < 0.55) & (r2 > 0.12) & (fields.fine[r] > -0.2)
        paint(tissue, r, med, T["kidney_medulla"], abd)
        sinus = kid & (r2 < 0.22) & (d[0] > 0.05 * ax[0])
        paint(tissue, r, sinus, T["renal_sinus"], abd)


def paint_great_vessels(tissue: np.ndarray, slab: Slab, vessels: Vessels, cavity: np.ndarray) -> None:
    """Aorta, IVC, SMA and the iliac arteries, inside the cavity."""
    for t, tid in ((vessels.aorta, "aorta"), (vessels.ivc, "ivc"), (vessels.sma, "aorta")):
        paint_tube(tissue, slab, t, T[tid], cavity)
    for t in vessels.iliac_arteries:
        paint_tube(tissue, slab, t, T["aorta"], cavity)


def paint_skeleton(tissue: np.ndarray, slab: Slab, a: Anatomy, reg: Regions) -> None:
    """Spine, ribs and costal cartilages, iliac wings."""
    paint_spine(tissue, slab, a.spine)
    paint_ribs(tissue, slab, a.ribs, a.body, reg.wall)
    for wing in a.iliac_wings:
        paint_ellipsoid(tissue, slab, wing, ((1.0, "bone_cortex"), (0.5, "bone_marrow")), reg.body)


def paint_spine(tissue: np.ndarray, slab: Slab, spine: Spine) -> None:
    """Vertebral bodies and discs, posterior arches with their processes, the spinal canal, down to bottom_z."""
    r = slab.region((-50, spine.front_y - 2, spine.bottom_z), (50, spine.spinous_y + 2, 1e4))
    if r is None:
        return
    q = slab.q(r)
    # position (mm) of each voxel inside its level: a disc is centred on 0 (= level_height)
    phase = np.mod(q[2] - np.float32(spine.disc_z), np.float32(spine.level_height))
    sub = tissue[r]
    vb = _paint_vertebral_bodies(sub, q, phase, spine)
    _paint_posterior_elements(sub, q, phase, spine, vb)
    qx, qy = q[0], q[1]
    sub[(qx / 11) ** 2 + ((qy - spine.canal_y) / 9) ** 2 < 1] = T["spinal_canal"]


def _paint_vertebral_bodies(sub: np.ndarray, q, phase: np.ndarray, spine: Spine) -> np.ndarray:
    """Discs, then the bodies' cortex and marrow (endplates of cortex); returns the bodies' mask."""
    qx, qy, _ = q
    ys, (rvx, rvy) = spine.body_y, spine.body_radii
    period, disc = spine.level_height, spine.disc_height
    in_body = (phase > disc / 2) & (phase < period - disc / 2)
    endplate = (phase < disc / 2 + 1.5) | (phase > period - disc / 2 - 1.5)
    r2 = (qx / rvx) ** 2 + ((qy - ys) / rvy) ** 2
    vb = r2 < 1
    sub[vb] = T["disc"]
    sub[vb & in_body] = T["bone_cortex"]
    sub[vb & in_body & (r2 < 0.75) & ~endplate] = T["bone_marrow"]
    return vb


def _paint_posterior_elements(sub: np.ndarray, q, phase: np.ndarray, spine: Spine, vb: np.ndarray) -> None:
    """Posterior arch (pedicles, laminae), spinous and transverse processes, over the upper part of each level."""
    qx, qy, _ = q
    ys, y_c, y_sp = spine.body_y, spine.canal_y, spine.spinous_y
    period, disc = spine.level_height, spine.disc_height
    arch_z = (phase > disc / 2 + 2) & (phase < period * 0.75)
    ra2 = (qx / 21) ** 2 + ((qy - y_c) / 17) ** 2
    rc2 = (qx / 11) ** 2 + ((qy - y_c) / 9) ** 2
    arch = arch_z & (ra2 < 1) & (qy > ys) & ((np.abs(qx) > 11) | (qy > y_c + 4))
    sub[arch & ~vb] = T["bone_cortex"]
    sub[arch & (ra2 < 0.75) & (rc2 > 1.8) & ~vb] = T["bone_marrow"]
    spin = arch_z & (np.abs(qx) < 3.5) & (qy > y_c + 12) & (qy < y_sp)
    sub[spin] = T["bone_marrow"]
    sub[spin & (np.abs(qx) > 2)] = T["bone_cortex"]
    trans = (phase > disc / 2 + 8) & (phase < period * 0.45) & (np.abs(qy - y_c + 3) < 3.5) & (np.abs(qx) < 38)
    sub[trans & (np.abs(qx) > 15)] = T["bone_marrow"]


def paint_ribs(tissue: np.ndarray, slab: Slab, ribs: Ribs, body: Body, wall: np.ndarray) -> None:
    """Ribs and costal cartilages, inside the abdominal wall's muscle ring `wall` (bool, the slab's shape)."""
    Ac, Bac, Bpc = body.cavity
    tm = body.wall_muscle
    A_r, Ba_r, Bp_r = Ac + 0.5 * tm, Bac + 0.5 * tm, Bpc + 0.5 * tm
    hw, hh = ribs.half_thickness, ribs.half_height
    zmin = min(rib.z_back - rib.drop for rib in ribs.ribs) - hh
    zmax = max(rib.z_back for rib in ribs.ribs) + hh
    if slab.zs[-1] + slab.umax[2] < zmin or slab.zs[0] - slab.umax[2] > zmax:
        return
    # radial coordinate of the rib track (an ellipse in the middle of the wall), on the wall's voxels only
    cand = np.nonzero(wall)
    if cand[0].size == 0:
        return
    qx, qy, qz = slab.qx[cand], slab.qy[cand], slab.qz[cand]
    n = np.sqrt((qx / np.float32(A_r)) ** 2 + (qy / np.where(qy < 0, np.float32(Ba_r), np.float32(Bp_r))) ** 2)
    theta = np.degrees(np.arctan2(np.abs(qx), qy))  # 0 posterior midline, 180 anterior midline
    radial = (n - 1) * np.sqrt((A_r * np.sin(np.radians(theta))) ** 2 + (Bp_r * np.cos(np.radians(theta))) ** 2)
    out = np.zeros(qx.shape, np.uint8)
    for rib in ribs.ribs:
        end = rib.end_deg
        if end < 35:
            continue
        zr = rib.z_back - rib.drop * np.clip((theta - 30) / 150, 0, 1) ** 1.3
        rr = (radial / hw) ** 2 + ((qz - zr) / hh) ** 2
        along = (theta > 30) & (theta < end)
        inside = along & (rr < 1)
        cart = inside & (theta > end - 35) & (end > 140)
        out[inside] = T["bone_cortex"]
        out[inside & (rr < 0.35)] = T["bone_marrow"]
        out[cart] = T["cartilage"]
    keep = out > 0
    tissue[tuple(c[keep] for c in cand)] = out[keep]
