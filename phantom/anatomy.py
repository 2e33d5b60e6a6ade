"""Abdominal anatomy of the CT phantom, in LPS patient millimetres (+x patient left, +y posterior, +z superior).

`draw_anatomy` draws one patient's parameters; `rasterize` paints the tissue ids (phantom_tissues.TISSUE_ID) of a
`Slab`. The frame's origin is the middle of the body at about the level of L1/L2 (renal hila), z = 0.
Shapes are painted in order, later ones over earlier ones, and abdominal organs are clipped to the abdominal
cavity below the diaphragm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.shapes import Slab, ellipsoid, ellipsoid_box, frame, paint, tube
from phantom.tissues import TISSUE_ID as T

Z_BAND = (-120.0, 150.0)  # z range (mm) holding all four labelled organs in every drawn anatomy


def draw_anatomy(rng: np.random.Generator) -> dict:
    """One random patient: body habitus, organ positions, sizes and orientations (a dict)."""
    u = rng.uniform
    a: dict = {}
    A = u(135, 180)  # body half-width
    a["A"], a["Ba"], a["Bp"] = A, A * u(0.62, 0.78), A * u(0.58, 0.70)
    a["tf"] = u(6, 35)  # subcutaneous fat
    a["tm"] = u(7, 13)  # abdominal wall muscle
    # spine: from the back inwards
    a["y_sp"] = a["Bp"] - 0.5 * a["tf"] - u(12, 20)
    a["y_c"] = a["y_sp"] - u(34, 40)
    a["rv"] = (u(21, 26), u(16, 20))
    a["ys"] = a["y_c"] - 10 - a["rv"][1]
    a["period"], a["disc"], a["z0v"] = u(32, 38), u(7, 10), u(0, 35)
    ys, rvy = a["ys"], a["rv"][1]
    # the aorta lies on the vertebral body; the abdomen leaves room in front of it for the pancreas, the vessels
    # between them and the stomach (a deeper belly where the drawn habitus would not)
    a["y_ao"], a["r_ao"] = ys - rvy - 12, u(10, 13)
    front = a["y_ao"] - a["r_ao"]  # anterior wall of the aorta and of the IVC beside it
    room = u(40, 60)
    Bac = a["Ba"] - a["tf"] - a["tm"]
    if front + Bac < room:
        a["Ba"] += room - front - Bac
    a["cavity"] = (A - a["tf"] - a["tm"], a["Ba"] - a["tf"] - a["tm"], a["Bp"] - 0.5 * a["tf"] - a["tm"])
    # diaphragm domes
    a["zR"], a["zL"] = u(125, 165), 0.0
    a["zL"] = a["zR"] - u(5, 25)
    # kidneys
    zk = u(-15, 15)
    a["kidneys"] = []
    for side, dz in ((1.0, u(0, 15)), (-1.0, -u(0, 10))):
        c = (side * u(62, 78), ys + u(8, 20), zk + dz)
        ang = np.deg2rad(u(20, 40))
        toward = (-side * np.cos(ang), -np.sin(ang), 0.0)
        tilt = np.deg2rad(u(8, 20))
        long_axis = (-side * np.sin(tilt), np.sin(np.deg2rad(u(0, 15))), 1.0)
        axes = (u(23, 29), u(20, 25), u(48, 62))
        a["kidneys"].append((c, axes, frame(long_axis, toward)))
    # liver: right lobe and left lobe
    s = u(0.85, 1.15)
    right = (np.array([u(-85, -65), u(-15, 10), u(55, 85)]), np.array([90, u(75, 95), u(80, 100)]) * s)
    left = (np.array([u(0, 30), u(-65, -45), u(70, 100)]), np.array([u(45, 70), u(28, 40), u(35, 55)]) * s)
    a["liver"] = [right, (_joined(left[0], left[1], *right), left[1])]
    # spleen
    a["spleen"] = (
        (u(80, 100), u(30, 55), u(45, 80)),
        np.array((u(20, 27), u(38, 52), u(55, 72))) * u(0.85, 1.2),
        frame((u(0.2, 0.5), u(-0.7, -0.4), -1.0), (-1.0, -0.4, 0.0)),
    )
    # pancreas, one connected organ whose centre line nothing painted later crosses: the head in front of the
    # IVC (which may groove its back), the neck and body in front of the aorta with a gap g for the SMA and the
    # splenic vein, the tail toward the splenic hilum on the front of the left kidney
    zp = u(15, 40)
    kl, k_ax, k_rows = a["kidneys"][0]
    k_lo = ellipsoid_box(kl, k_ax, k_rows)[0]  # the kidney's anterior extent is k_lo[1]
    rad = np.array([u(14, 19), u(10, 13), u(9, 12), u(8, 11), u(7, 10)])
    g = u(7, 11)
    a["pancreas"] = (
        np.array(
            [
                (u(-40, -25), front - u(0, 3) - 0.7 * rad[0], zp - u(15, 25)),
                (u(-15, -5), front - g - rad[1], zp),
                (u(15, 25), front - g - rad[2], zp + u(0, 8)),
                (u(45, 55), min(kl[1] - u(45, 55), front - g - rad[3]), zp + u(5, 15)),
                (kl[0] + u(5, 18), k_lo[1] - u(0, 4) - 0.6 * rad[4], zp + u(15, 28)),
            ]
        ),
        rad,
    )
    a["zp"] = zp
    # vessels
    xa = u(8, 16)
    a["z_bif"] = u(-115, -80)
    a["aorta"] = (
        np.array(
            [
                (xa + 10, ys - 5, 600.0),
                (xa + 8, ys - 8, a["zR"] - 20),
                (xa, a["y_ao"], 40.0),
                (xa - 2, a["y_ao"], a["z_bif"]),
            ]
        ),
        np.full(4, a["r_ao"]),
    )
    bif = np.array([xa - 2, a["y_ao"], a["z_bif"]])
    a["iliacs"] = [(np.array([bif, bif + (side * 70, 25, -150)]), np.array([7.0, 6.0])) for side in (-1, 1)]
    a["ivc"] = (
        np.array(
            [
                (-22, ys - rvy - 8, a["z_bif"] - 10),
                (-25, ys - rvy - 12, 40.0),
                (-22, ys - rvy - 10, a["zR"] - 30),
                (-12, ys - rvy - 16, a["zR"] + 20),
            ]
        ),
        np.array([u(9, 12), u(10, 13), 13.0, 14.0]),
    )
    # the portal confluence behind the neck, the splenic vein along the back of the body and tail, the SMA from
    # the aorta down behind the neck: each at most grooves the pancreas's back
    pts, rad = a["pancreas"]
    conf = pts[1] + (u(-3, 3), rad[1] + 3, -5)
    hilum = np.array([u(-50, -35), u(-5, 10), zp + u(35, 50)])
    a["portal"] = (np.array([conf + (5, -10, -90), conf, hilum]), np.array([5.0, 7.0, 7.5]))
    a["splenic_v"] = (
        np.array([conf, pts[2] + (0, rad[2] + 2, 0), pts[3] + (0, rad[3] + 2, 0), pts[4] + (5, rad[4] + 2, 5)]),
        np.array([4.5, 4.5, 4.0, 3.5]),
    )
    a["sma"] = (
        np.array([(xa, a["y_ao"] - 8, zp + 5), (xa - 2, front - g / 2, zp - 12), (xa - 8, front - g - 10, zp - 110)]),
        np.array([3.5, 3.5, 2.5]),
    )
    # vessels inside the liver: portal branches from the hilum, hepatic veins to the IVC
    a["liver_vessels"] = []
    ivc_top = np.array([-12.0, ys - rvy - 30, a["zR"] - 15])
    for _ in range(int(rng.integers(4, 8))):
        end = np.array([u(-150, 30), u(-70, 50), u(10, 140)])
        start = hilum if rng.random() < 0.5 else ivc_top
        mid = (start + end) / 2 + rng.normal(0, 10, 3)
        a["liver_vessels"].append((np.array([start, mid, end]), np.array([u(5, 8), u(3, 5), 1.5])))
    # gallbladder, stomach, duodenum, colon, bladder
    a["gallbladder"] = None
    if rng.random() < 0.85:
        a["gallbladder"] = (
            (u(-60, -35), u(-55, -30), zp + u(-15, 10)),
            (u(12, 18), u(13, 20), u(25, 40)),
            frame((u(-0.3, 0.3), u(-0.6, -0.2), 1.0), (1, 0, 0)),
        )
    a["stomach"] = (
        (u(35, 60), u(-50, -20), u(85, 115)),
        (u(38, 55), u(32, 45), u(45, 65)),
        frame((u(-0.4, 0.2), u(-0.5, 0.1), 1.0), (1, 0, 0)),
        u(0.1, 0.8),
    )
    a["duodenum"] = (
        np.array(
            [
                (u(-10, 5), -45, zp + 20),
                (u(-35, -25), -30, zp + 15),
                (-50, u(-15, 0), zp - 5),
                (-45, u(-10, 5), zp - 45),
                (-10, u(-10, 0), zp - 60),
                (u(20, 30), u(-15, -5), zp - 45),
                (u(25, 35), -20, zp - 15),
            ]
        ),
        np.full(7, u(9, 13)),
    )
    Ac, Bc = a["cavity"][0], a["cavity"][1]
    a["colon"] = (
        np.array(
            [
                (-Ac + 30, u(-20, 10), -220),
                (-Ac + 28, u(-10, 10), -60),
                (-Ac + 40, -20, zp - 20),
                (-30, -Bc + 35, u(-40, 0)),
                (30, -Bc + 35, u(-40, 0)),
                (Ac - 35, -25, zp + u(0, 30)),
                (Ac - 28, u(0, 25), -60),
                (Ac - 30, u(-20, 10), -180),
                (20, -20, -230),
            ]
        ),
        np.full(9, u(18, 26)),
    )
    a["bladder"] = ((0.0, u(-60, -30), u(-260, -220)), (u(35, 55), u(30, 45), u(30, 45)))
    a["iliac_wings"] = [
        ((side * u(80, 100), u(30, 50), u(-185, -150)), (u(12, 16), u(45, 60), u(50, 65))) for side in (-1, 1)
    ]
    a["heart"] = ((u(10, 30), u(-50, -25), a["zR"] + u(35, 55)), (u(60, 75), u(45, 55), u(50, 60)))
    # ribs: posterior height of ribs 12, 11, ... upwards; each descends anteriorly
    z12 = u(0, 30)
    a["ribs"] = [(z12 + k * u(23, 28), u(90, 140), 100 + 25 * min(k, 3) + u(-10, 10)) for k in range(14)]
    a["rib_hw"] = (u(3.5, 5), u(5, 7))  # radial half-thickness, vertical half-height
    a["bowel_level"] = zp + u(-10, 15)
    a["oral_contrast"] = rng.random() < 0.3
    a["gas_thr"] = u(0.6, 1.6)
    a["perirenal"] = u(3, 12)
    a["table_gap"] = u(0, 6)
    a["table_radius"] = u(500, 1500)
    return a


def body_norm(sq, A, Ba, Bp):
    """Normalized body contour value: < 1 inside. Anterior half an ellipse, posterior half flattened (y^4).

    sq: (qx^2, qy^2, qy < 0) of the slab.
    """
    x2, y2, ant = sq
    ya = y2 * np.float32(1 / Ba**2)
    yp = y2 * np.float32(1 / Bp**2)
    return x2 * np.float32(1 / A**2) + np.where(ant, ya, yp * yp)


def _joined(c, ax, c_to, ax_to, depth: float = 0.6) -> np.ndarray:
    """Centre c (xyz mm), moved toward c_to in 2 mm steps until the ellipsoid (c, ax) reaches well into (c_to, ax_to).

    "Well into": the point 70 % of the way from c to its edge facing c_to (along x) lies at r2 <= depth in the
    other ellipsoid, so the two lobes of an organ meet in a wide bridge rather than a thin neck that a vessel
    painted later could cut through.
    """
    c = np.asarray(c, float).copy()
    step = (c_to - c) / max(float(np.linalg.norm(c_to - c)), 1e-6) * 2.0
    for _ in range(200):
        probe = c + np.array([np.sign(c_to[0] - c[0]) * 0.7 * ax[0], 0.0, 0.0])
        if (((probe - c_to) / ax_to) ** 2).sum() <= depth:
            break
        c = c + step
    return c


def _diaphragm(qx, qy, a):
    """Height z (mm) of the diaphragm above (x, y): two domes, lower laterally and posteriorly."""
    # the right dome higher than the left, blended across the midline (no step that would cut the liver in two)
    w = np.clip(0.5 - qx / np.float32(60), 0, 1)
    ztop = np.float32(a["zL"]) + np.float32(a["zR"] - a["zL"]) * w
    lat = (np.abs(qx) - 65) / 95
    ant = (qy + 20) / 110
    return ztop - 55 * lat * lat - 60 * ant * ant


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


def rasterize(a: dict, slab: Slab, fields: dict) -> np.ndarray:
    """uint8 tissue ids (zyx, the slab's shape) of anatomy `a` on `slab`.

    fields: float32 zyx smooth fields on the slab, keys 'fine' (texture, ~N(0,1)) and 'bowel1', 'bowel2'
    (independent ~N(0,1) fields whose joint small values trace the small-bowel loops).
    """
    tissue = np.zeros(slab.shape, np.uint8)
    paint_table(tissue, slab, a)
    reg = paint_body(tissue, slab, a)
    paint_thorax(tissue, slab, a, reg)
    paint_viscera(tissue, slab, a, fields, reg)
    paint_skeleton(tissue, slab, a, reg)
    return tissue


def paint_table(tissue: np.ndarray, slab: Slab, a: dict) -> None:
    """The table under the patient (undeformed), curving up at the sides."""
    full = (slice(None),) * 3
    y_t = a["Bp"] - 4 + a["table_gap"]
    yy = slab.ys[None, :, None] + (slab.xs**2 / (2 * a["table_radius"]))[None, None, :]
    in_x = np.abs(slab.xs)[None, None, :] < 230
    t_mask = np.broadcast_to((yy > y_t) & (yy < y_t + 40) & in_x, slab.shape)
    paint(tissue, full, t_mask, T["table"])
    shell = ((yy > y_t) & (yy < y_t + 3)) | ((yy > y_t + 37) & (yy < y_t + 40))
    paint(tissue, full, np.broadcast_to(shell & in_x, slab.shape), T["table_shell"])


def paint_body(tissue: np.ndarray, slab: Slab, a: dict) -> Regions:
    """Skin, subcutaneous fat, the wall's muscle and the visceral fat of a body of constant cross-section."""
    qx, qy = slab.qx, slab.qy
    A, Ba, Bp, tf = a["A"], a["Ba"], a["Bp"], a["tf"]
    sq = (qx * qx, qy * qy, qy < 0)
    body = body_norm(sq, A, Ba, Bp) < 1
    tissue[body] = T["skin"]
    tissue[body_norm(sq, A - 2, Ba - 2, Bp - 2) < 1] = T["fat_subcutaneous"]
    inner = body_norm(sq, A - tf, Ba - tf, Bp - 0.5 * tf) < 1
    tissue[inner] = T["muscle"]
    Ac, Bac, Bpc = a["cavity"]
    cavity = body_norm(sq, Ac, Bac, Bpc) < 1
    return cavity_regions(tissue, slab, a, body, inner, cavity)


def cavity_regions(tissue, slab: Slab, a: dict, body, inner, cavity) -> Regions:
    """Fill the cavity with visceral fat below the diaphragm and muscle (the diaphragm) above it; the regions."""
    tissue[cavity] = T["fat_visceral"]
    zd = _diaphragm(slab.qx, slab.qy, a)
    abd = cavity & (slab.qz < zd)
    thorax = cavity & (slab.qz > zd + 5)
    tissue[cavity & ~abd] = T["muscle"]  # diaphragm
    return Regions(body=body, cavity=cavity, abd=abd, thorax=thorax, wall=inner & ~cavity)


def paint_thorax(tissue: np.ndarray, slab: Slab, a: dict, reg: Regions) -> None:
    """Lungs, mediastinum and heart above the diaphragm."""
    qx, qy = slab.qx, slab.qy
    ys, rvy = a["ys"], a["rv"][1]
    thorax = reg.thorax
    tissue[thorax] = T["lung"]
    med = thorax & (np.abs(qx - 10) < 35 + 0.25 * np.maximum(ys - qy, 0)) & (qy < ys + rvy)
    tissue[med] = T["mediastinum"]
    e = ellipsoid(slab, *a["heart"])
    if e is not None:
        paint(tissue, e[0], e[2] < 1, T["heart"], thorax)


def paint_viscera(tissue: np.ndarray, slab: Slab, a: dict, fields: dict, reg: Regions) -> None:
    """Everything inside the abdomen, in painting order: later stages paint over earlier ones."""
    paint_back_muscles(tissue, slab, a, reg)
    paint_small_bowel(tissue, slab, a, fields, reg)
    paint_gut(tissue, slab, a, fields, reg)
    liver_mask = paint_liver(tissue, slab, a, reg)
    for pts, rad in a["liver_vessels"]:
        t = tube(slab, pts, rad)
        if t is not None:
            paint(tissue, t[0], t[1] < 1, T["liver_vessel"], liver_mask)
    if a["gallbladder"] is not None:
        e = ellipsoid(slab, *a["gallbladder"])
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["gallbladder"], reg.abd)
    paint_spleen_pancreas(tissue, slab, a, fields, reg)
    paint_kidneys(tissue, slab, a, fields, reg)
    paint_great_vessels(tissue, slab, a, reg)


def paint_back_muscles(tissue: np.ndarray, slab: Slab, a: dict, reg: Regions) -> None:
    """Paraspinal muscles, quadratus lumborum and psoas (growing downward from L1) on both sides."""
    ys, rvx = a["ys"], a["rv"][0]
    for side in (-1, 1):
        e = ellipsoid(slab, (side * (0.5 * rvx + 22), a["y_c"] + 18, 0.0), (26, 22, 1e4))
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["muscle"], reg.body)
        e = ellipsoid(slab, (side * 72, ys + 42, -60.0), (20, 12, 110))
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["muscle"], reg.abd)
        lo = (side * rvx - 60 if side < 0 else 0, ys - 40, a.get("psoas_z_min", -1e4))
        r = slab.region(lo, (0 if side < 0 else rvx + 60, ys + 40, 40))
        if r is not None:
            rx, ry, rz = slab.q(r)
            rad = np.clip(4 + 0.14 * (40 - rz), 0, 28)
            cx = side * (rvx + 0.8 * rad)
            m = ((rx - cx) ** 2 + ((ry - ys - 2) * 1.2) ** 2) < rad * rad
            paint(tissue, r, m, T["muscle"], reg.abd)


def paint_small_bowel(tissue: np.ndarray, slab: Slab, a: dict, fields: dict, reg: Regions) -> None:
    """The tangle where two smooth fields are both near zero, in the lower anterior abdomen.

    a["small_bowel_rr"] (optional): the (wall, lumen) thresholds of f1^2 + f2^2 (default (0.8, 0.45)).
    """
    f1, f2 = fields["bowel1"], fields["bowel2"]
    loops = reg.abd & (slab.qz < a["bowel_level"]) & (slab.qy < a["ys"] - a["rv"][1] + 5)
    rr = f1 * f1 + f2 * f2
    wall_rr, lumen_rr = a.get("small_bowel_rr", (0.8, 0.45))
    tissue[loops & (rr < wall_rr)] = T["bowel_wall"]
    lumen = loops & (rr < lumen_rr)
    tissue[lumen] = _bowel_content(a)
    tissue[lumen & (fields["fine"] > a["gas_thr"])] = T["gas"]


def _bowel_content(a: dict) -> int:
    return T["oral_contrast"] if a["oral_contrast"] else T["bowel_content"]


def paint_gut(tissue: np.ndarray, slab: Slab, a: dict, fields: dict, reg: Regions) -> None:
    """Colon (a["colon_fill"]: its content tissue, default stool), bladder, stomach, duodenum."""
    abd = reg.abd
    t = tube(slab, *a["colon"])
    if t is not None:
        r, rho = t
        haustra = 1.0 + 0.08 * np.sin(slab.qz[r] * 0.25 + slab.qx[r] * 0.25)
        rho = rho * haustra
        paint(tissue, r, rho < 1, T["bowel_wall"], abd)
        inner = rho < 0.85
        paint(tissue, r, inner, a.get("colon_fill", T["stool"]), abd)
        paint(tissue, r, inner & (fields["fine"][r] > a["gas_thr"] - 0.8), T["gas"], abd)
    if a["bladder"] is not None:
        e = ellipsoid(slab, *a["bladder"])
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["bowel_wall"], abd)
            paint(tissue, e[0], e[2] < 0.85, T["urine"], abd)
    # stomach with an air-fluid level (air rises anteriorly in a supine patient)
    c, ax, rows, level = a["stomach"]
    e = ellipsoid(slab, c, ax, rows)
    if e is not None:
        r, d, r2 = e
        paint(tissue, r, r2 < 1, T["stomach_wall"], abd)
        inner = r2 < (1 - 5 / min(ax)) ** 2
        paint(tissue, r, inner, a.get("gastric_content", T["gastric_fluid"]), abd)
        paint(tissue, r, inner & (slab.qy[r] < c[1] - level * ax[1]), T["gas"], abd)
    if a.get("antrum") is not None:  # version 3 on: the antrum in front of the pancreas, to the duodenal bulb
        pts, radii, lumen = a["antrum"]
        t = tube(slab, pts, radii)
        if t is not None:
            r, rho = t
            paint(tissue, r, rho < 1, T["stomach_wall"], abd)
            paint(tissue, r, rho < lumen, a.get("gastric_content", T["gastric_fluid"]), abd)
    t = tube(slab, *a["duodenum"])
    if t is not None:
        r, rho = t
        paint(tissue, r, rho < 1, T["bowel_wall"], abd)
        paint(tissue, r, rho < 0.7, _bowel_content(a), abd)


def paint_liver(tissue: np.ndarray, slab: Slab, a: dict, reg: Regions) -> np.ndarray:
    """The liver (and the perirenal fat it stays out of); returns the liver's mask."""
    qx, qy, qz = slab.qx, slab.qy, slab.qz
    ys, rvx, rvy = a["ys"], a["rv"][0], a["rv"][1]
    liver_mask = np.zeros(slab.shape, bool)
    for c, ax in a["liver"]:
        e = ellipsoid(slab, c, ax)
        if e is not None:
            liver_mask[e[0]] |= e[2] < 1
    liver_mask &= reg.abd
    # the liver stays out of the prevertebral space and the fat around the kidneys (Gerota's fascia), and lies
    # anterolateral to the right kidney at the kidney's levels
    liver_mask &= ~((qy > ys - rvy - 12) & (np.abs(qx - 5) < rvx + 28))
    k_top = max(c[2] + 0.9 * ax[2] for c, ax, _ in a["kidneys"])
    liver_mask &= ~((qy > ys + 30) & (qz < k_top))
    for c, ax, rows in a["kidneys"]:
        e = ellipsoid(slab, c, np.asarray(ax) + a["perirenal"], rows)
        if e is not None:
            peri = e[2] < 1
            liver_mask[e[0]] &= ~peri
            paint(tissue, e[0], peri, T["fat_visceral"], reg.abd)
    tissue[liver_mask] = T["liver"]
    return liver_mask


def paint_spleen_pancreas(tissue: np.ndarray, slab: Slab, a: dict, fields: dict, reg: Regions) -> None:
    """The spleen (an ellipsoid hollowed at its hilum), the pancreas, then the veins behind and through it."""
    abd = reg.abd
    c, ax, rows = a["spleen"]
    e = ellipsoid(slab, c, ax, rows)
    if e is not None:
        r, d, r2 = e
        hil = (d[0] > 0.3 * ax[0]) & ((d[1] / ax[1]) ** 2 + (d[2] / ax[2]) ** 2 < 0.3)
        paint(tissue, r, (r2 < 1) & ~hil, T["spleen"], abd)
    t = tube(slab, *a["pancreas"])
    if t is not None:
        r, rho = t
        lob = rho * (1 + 0.08 * np.maximum(fields["fine"][r], 0))  # lobulated by bites into its surface, no islands
        paint(tissue, r, lob < 1, T["pancreas"], abd)
    for key in ("splenic_v", "portal"):
        t = tube(slab, *a[key])
        if t is not None:
            paint(tissue, t[0], t[1] < 1, T["portal_vein"], abd)


def paint_kidneys(tissue: np.ndarray, slab: Slab, a: dict, fields: dict, reg: Regions) -> None:
    """Kidneys: cortex, medulla (pyramids), sinus fat at the hilum."""
    for c, ax, rows in a["kidneys"]:
        e = ellipsoid(slab, c, ax, rows)
        if e is None:
            continue
        r, d, r2 = e
        notch = (d[0] > 0.55 * ax[0]) & (np.abs(d[2]) < 0.45 * ax[2])
        kid = (r2 < 1) & ~notch
        paint(tissue, r, kid, T["kidney_cortex"], reg.abd)
        med = kid & (r2 < 0.55) & (r2 > 0.12) & (fields["fine"][r] > -0.2)
        paint(tissue, r, med, T["kidney_medulla"], reg.abd)
        sinus = kid & (r2 < 0.22) & (d[0] > 0.05 * ax[0])
        paint(tissue, r, sinus, T["renal_sinus"], reg.abd)


def paint_great_vessels(tissue: np.ndarray, slab: Slab, a: dict, reg: Regions) -> None:
    """Aorta, IVC, SMA and the iliac arteries, inside the cavity."""
    for key, tid in (("aorta", "aorta"), ("ivc", "ivc"), ("sma", "aorta")):
        t = tube(slab, *a[key])
        if t is not None:
            paint(tissue, t[0], t[1] < 1, T[tid], reg.cavity)
    for pts, rad in a["iliacs"]:
        t = tube(slab, pts, rad)
        if t is not None:
            paint(tissue, t[0], t[1] < 1, T["aorta"], reg.cavity)


def paint_skeleton(tissue: np.ndarray, slab: Slab, a: dict, reg: Regions) -> None:
    """Spine, ribs and costal cartilages, iliac wings."""
    _paint_spine(tissue, slab, a)
    _paint_ribs(tissue, slab, a, reg.wall)
    for c, ax in a["iliac_wings"]:
        e = ellipsoid(slab, c, ax)
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["bone_cortex"], reg.body)
            paint(tissue, e[0], e[2] < 0.5, T["bone_marrow"], reg.body)


def _paint_spine(tissue: np.ndarray, slab: Slab, a: dict) -> None:
    ys, (rvx, rvy), y_c, y_sp = a["ys"], a["rv"], a["y_c"], a["y_sp"]
    period, disc = a["period"], a["disc"]
    r = slab.region((-50, ys - rvy - 2, a.get("spine_z_min", -1e4)), (50, y_sp + 2, 1e4))
    if r is None:
        return
    qx, qy, qz = slab.q(r)
    phase = np.mod(qz - np.float32(a["z0v"]), np.float32(period))
    in_body = (phase > disc / 2) & (phase < period - disc / 2)
    endplate = (phase < disc / 2 + 1.5) | (phase > period - disc / 2 - 1.5)
    r2 = (qx / rvx) ** 2 + ((qy - ys) / rvy) ** 2
    vb = r2 < 1
    sub = tissue[r]
    sub[vb] = T["disc"]
    sub[vb & in_body] = T["bone_cortex"]
    sub[vb & in_body & (r2 < 0.75) & ~endplate] = T["bone_marrow"]
    # posterior arch (pedicles, laminae), spinous and transverse processes, only over the upper part of each level
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
    sub[rc2 < 1] = T["spinal_canal"]


def _paint_ribs(tissue: np.ndarray, slab: Slab, a: dict, wall: np.ndarray) -> None:
    """Ribs and costal cartilages, inside the abdominal wall's muscle ring `wall` (bool, the slab's shape)."""
    Ac, Bac, Bpc = a["cavity"]
    tm = a["tm"]
    A_r, Ba_r, Bp_r = Ac + 0.5 * tm, Bac + 0.5 * tm, Bpc + 0.5 * tm
    hw, hh = a["rib_hw"]
    zmin = min(z - drop for z, drop, _ in a["ribs"]) - hh
    zmax = max(z for z, _, _ in a["ribs"]) + hh
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
    for z_post, drop, end in a["ribs"]:
        if end < 35:
            continue
        zr = z_post - drop * np.clip((theta - 30) / 150, 0, 1) ** 1.3
        rr = (radial / hw) ** 2 + ((qz - zr) / hh) ** 2
        along = (theta > 30) & (theta < end)
        inside = along & (rr < 1)
        cart = inside & (theta > end - 35) & (end > 140)
        out[inside] = T["bone_cortex"]
        out[inside & (rr < 0.35)] = T["bone_marrow"]
        out[cart] = T["cartilage"]
    keep = out > 0
    tissue[tuple(c[keep] for c in cand)] = out[keep]
