"""Drawing one version-2 phantom patient (phantom/anatomy.py's `Anatomy`): one function per structure.

`draw_anatomy` draws the structures in a fixed order: the order of the random draws is part of the generator's
output (a seed gives the same patient in every release), so a new draw goes after the existing ones. LPS patient
millimetres (+x patient left, +y posterior, +z superior), z = 0 at L1/L2.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from phantom.anatomy import (
    Anatomy,
    Body,
    Bowel,
    Diaphragm,
    Kidneys,
    Liver,
    Pancreas,
    Rib,
    Ribs,
    Spine,
    Stomach,
    Table,
    Vessels,
)
from phantom.shapes import Ellipsoid, Tube, ellipsoid_box, frame


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """One random patient (version 2's anatomy), drawn structure by structure in a fixed order."""
    u = rng.uniform
    body = _draw_body(rng)
    spine = _draw_spine(rng, body)
    # the aorta lies on the vertebral body; the abdomen leaves room in front of it for the pancreas, the vessels
    # between them and the stomach (a deeper belly where the drawn habitus would not)
    aorta_y, aorta_r = spine.front_y - 12, u(10, 13)
    front = aorta_y - aorta_r  # anterior wall of the aorta and of the IVC beside it
    body = _room_in_front_of_the_aorta(rng, body, front)
    diaphragm = _draw_diaphragm(rng)
    left_kidney, right_kidney = _draw_kidneys(rng, spine)
    right_lobe, left_lobe = _draw_liver_lobes(rng)
    spleen = _draw_spleen(rng)
    pancreas, gap = _draw_pancreas(rng, front, left_kidney)
    aorta_x, aorta, iliacs, ivc = _draw_aorta_and_ivc(rng, spine, diaphragm, aorta_y, aorta_r)
    sma = _sma(aorta_x, aorta_y, front, gap, pancreas.level_z)
    portal, splenic, hilum = _draw_portal_system(rng, pancreas)
    liver_vessels = _draw_liver_vessels(rng, spine, diaphragm, hilum)
    gallbladder = _draw_gallbladder(rng, pancreas.level_z)
    stomach = _draw_stomach(rng)
    duodenum = _draw_duodenum(rng, pancreas.level_z)
    colon = _draw_colon(rng, body, pancreas.level_z)
    bladder = _draw_bladder(rng)
    iliac_wings = _draw_iliac_wings(rng)
    heart = _draw_heart(rng, diaphragm)
    ribs = _draw_ribs(rng)
    small_bowel_top_z = pancreas.level_z + u(-10, 15)
    oral_contrast = rng.random() < 0.3
    gas_threshold = u(0.6, 1.6)
    perirenal_fat = u(3, 12)
    table = Table(gap=u(0, 6), radius=u(500, 1500))
    return Anatomy(
        body=body,
        spine=spine,
        diaphragm=diaphragm,
        kidneys=Kidneys(left_kidney, right_kidney, perirenal_fat),
        liver=Liver(right_lobe, left_lobe, liver_vessels),
        spleen=spleen,
        pancreas=pancreas,
        vessels=Vessels(aorta=aorta, ivc=ivc, iliac_arteries=iliacs, sma=sma, portal_vein=portal, splenic_vein=splenic),
        gallbladder=gallbladder,
        stomach=stomach,
        bowel=Bowel(duodenum, colon, small_bowel_top_z, oral_contrast, gas_threshold),
        bladder=bladder,
        iliac_wings=iliac_wings,
        heart=heart,
        ribs=ribs,
        table=table,
    )


def _draw_body(rng: np.random.Generator) -> Body:
    """The habitus: half-width 135-180 mm, depths in proportion, fat 6-35 mm, wall muscle 7-13 mm."""
    u = rng.uniform
    half_width = u(135, 180)
    front_depth, back_depth = half_width * u(0.62, 0.78), half_width * u(0.58, 0.70)
    return Body(half_width, front_depth, back_depth, fat=u(6, 35), wall_muscle=u(7, 13))


def _draw_spine(rng: np.random.Generator, body: Body) -> Spine:
    """The spine from the back inwards: spinous processes, canal, vertebral bodies; levels of 32-38 mm."""
    u = rng.uniform
    spinous_y = body.back_depth - 0.5 * body.fat - u(12, 20)
    canal_y = spinous_y - u(34, 40)
    radii = (u(21, 26), u(16, 20))
    body_y = canal_y - 10 - radii[1]
    level, disc, disc_z = u(32, 38), u(7, 10), u(0, 35)
    return Spine(body_y, radii, canal_y, spinous_y, level, disc, disc_z)


def _room_in_front_of_the_aorta(rng: np.random.Generator, body: Body, front: float) -> Body:
    """`body` with its front deepened where the cavity in front of the aorta (anterior wall at y = front) would be
    shallower than a drawn 40-60 mm."""
    room = rng.uniform(40, 60)
    cavity_front = body.front_depth - body.fat - body.wall_muscle
    if front + cavity_front < room:
        return replace(body, front_depth=body.front_depth + (room - front - cavity_front))
    return body


def _draw_diaphragm(rng: np.random.Generator) -> Diaphragm:
    """The right dome at z 125-165 mm, the left one 5-25 mm lower."""
    right = rng.uniform(125, 165)
    return Diaphragm(right_dome_z=right, left_dome_z=right - rng.uniform(5, 25))


def _draw_kidneys(rng: np.random.Generator, spine: Spine) -> tuple[Ellipsoid, Ellipsoid]:
    """(left, right) kidneys beside the spine, the left one a little higher, each turned toward the hilum."""
    u = rng.uniform
    z_hila = u(-15, 15)
    offsets = ((1.0, u(0, 15)), (-1.0, -u(0, 10)))  # (side, z offset): both drawn before either kidney
    left, right = (_draw_kidney(rng, spine, side, z_hila + dz) for side, dz in offsets)
    return left, right


def _draw_kidney(rng: np.random.Generator, spine: Spine, side: float, z: float) -> Ellipsoid:
    """One kidney (side +1: the patient's left) centred at height z, its hilum facing forward and medially."""
    u = rng.uniform
    centre = (side * u(62, 78), spine.body_y + u(8, 20), z)
    ang = np.deg2rad(u(20, 40))
    toward = (-side * np.cos(ang), -np.sin(ang), 0.0)
    tilt = np.deg2rad(u(8, 20))
    long_axis = (-side * np.sin(tilt), np.sin(np.deg2rad(u(0, 15))), 1.0)
    axes = (u(23, 29), u(20, 25), u(48, 62))
    return Ellipsoid(centre, axes, frame(long_axis, toward))


def _draw_liver_lobes(rng: np.random.Generator) -> tuple[Ellipsoid, Ellipsoid]:
    """(right lobe, left lobe), scaled together by 0.85-1.15; the left lobe joined to the right one."""
    u = rng.uniform
    s = u(0.85, 1.15)
    right = Ellipsoid(np.array([u(-85, -65), u(-15, 10), u(55, 85)]), np.array([90, u(75, 95), u(80, 100)]) * s)
    left_centre = np.array([u(0, 30), u(-65, -45), u(70, 100)])
    left_axes = np.array([u(45, 70), u(28, 40), u(35, 55)]) * s
    return right, Ellipsoid(_joined(left_centre, left_axes, right.centre, right.axes), left_axes)


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


def _draw_spleen(rng: np.random.Generator) -> Ellipsoid:
    """The spleen behind the stomach on the left, its long axis tilted down and forward."""
    u = rng.uniform
    return Ellipsoid(
        (u(80, 100), u(30, 55), u(45, 80)),
        np.array((u(20, 27), u(38, 52), u(55, 72))) * u(0.85, 1.2),
        frame((u(0.2, 0.5), u(-0.7, -0.4), -1.0), (-1.0, -0.4, 0.0)),
    )


def _draw_pancreas(rng: np.random.Generator, front: float, left_kidney: Ellipsoid) -> tuple[Pancreas, float]:
    """(pancreas, gap mm between its neck and the aorta's front `front` (y mm), for the SMA and the splenic vein).

    One connected organ whose centre line nothing painted later crosses: the head in front of the IVC (which may
    groove its back), the neck and body in front of the aorta with the gap, the tail toward the splenic hilum on the
    front of the left kidney.
    """
    u = rng.uniform
    z = u(15, 40)
    kl = left_kidney.centre
    k_lo = ellipsoid_box(*left_kidney)[0]  # the kidney's anterior extent is k_lo[1]
    rad = np.array([u(14, 19), u(10, 13), u(9, 12), u(8, 11), u(7, 10)])
    g = u(7, 11)
    points = np.array(
        [
            (u(-40, -25), front - u(0, 3) - 0.7 * rad[0], z - u(15, 25)),
            (u(-15, -5), front - g - rad[1], z),
            (u(15, 25), front - g - rad[2], z + u(0, 8)),
            (u(45, 55), min(kl[1] - u(45, 55), front - g - rad[3]), z + u(5, 15)),
            (kl[0] + u(5, 18), k_lo[1] - u(0, 4) - 0.6 * rad[4], z + u(15, 28)),
        ]
    )
    return Pancreas(Tube(points, rad), level_z=z), g


def _draw_aorta_and_ivc(
    rng: np.random.Generator, spine: Spine, diaphragm: Diaphragm, aorta_y: float, aorta_r: float
) -> tuple[float, Tube, tuple[Tube, ...], Tube]:
    """(aorta's x mm, aorta, iliac arteries, IVC): the aorta on the spine down to its bifurcation, the IVC to its
    right."""
    u = rng.uniform
    ys, zr = spine.body_y, diaphragm.right_dome_z
    xa = u(8, 16)
    z_bif = u(-115, -80)
    aorta = Tube(
        np.array([(xa + 10, ys - 5, 600.0), (xa + 8, ys - 8, zr - 20), (xa, aorta_y, 40.0), (xa - 2, aorta_y, z_bif)]),
        np.full(4, aorta_r),
    )
    bif = np.array([xa - 2, aorta_y, z_bif])
    iliacs = tuple(Tube(np.array([bif, bif + (side * 70, 25, -150)]), np.array([7.0, 6.0])) for side in (-1, 1))
    y = spine.front_y
    ivc = Tube(
        np.array([(-22, y - 8, z_bif - 10), (-25, y - 12, 40.0), (-22, y - 10, zr - 30), (-12, y - 16, zr + 20)]),
        np.array([u(9, 12), u(10, 13), 13.0, 14.0]),
    )
    return xa, aorta, iliacs, ivc


def _sma(aorta_x: float, aorta_y: float, front: float, gap: float, z: float) -> Tube:
    """The superior mesenteric artery from the aorta down behind the pancreas's neck (at most grooving its back)."""
    points = [
        (aorta_x, aorta_y - 8, z + 5),
        (aorta_x - 2, front - gap / 2, z - 12),
        (aorta_x - 8, front - gap - 10, z - 110),
    ]
    return Tube(np.array(points), np.array([3.5, 3.5, 2.5]))


def _draw_portal_system(rng: np.random.Generator, pancreas: Pancreas) -> tuple[Tube, Tube, np.ndarray]:
    """(portal vein, splenic vein, liver hilum xyz mm): the confluence behind the pancreas's neck, the splenic vein
    along the back of its body and tail; each at most grooves the pancreas's back."""
    u = rng.uniform
    pts, rad = pancreas.centre_line
    conf = pts[1] + (u(-3, 3), rad[1] + 3, -5)
    hilum = np.array([u(-50, -35), u(-5, 10), pancreas.level_z + u(35, 50)])
    portal = Tube(np.array([conf + (5, -10, -90), conf, hilum]), np.array([5.0, 7.0, 7.5]))
    splenic = Tube(
        np.array([conf, pts[2] + (0, rad[2] + 2, 0), pts[3] + (0, rad[3] + 2, 0), pts[4] + (5, rad[4] + 2, 5)]),
        np.array([4.5, 4.5, 4.0, 3.5]),
    )
    return portal, splenic, hilum


def _draw_liver_vessels(
    rng: np.random.Generator, spine: Spine, diaphragm: Diaphragm, hilum: np.ndarray
) -> tuple[Tube, ...]:
    """4-7 vessels inside the liver: portal branches from the hilum, hepatic veins toward the IVC's top."""
    u = rng.uniform
    ivc_top = np.array([-12.0, spine.front_y - 30, diaphragm.right_dome_z - 15])
    vessels = []
    for _ in range(int(rng.integers(4, 8))):
        end = np.array([u(-150, 30), u(-70, 50), u(10, 140)])
        start = hilum if rng.random() < 0.5 else ivc_top
        mid = (start + end) / 2 + rng.normal(0, 10, 3)
        vessels.append(Tube(np.array([start, mid, end]), np.array([u(5, 8), u(3, 5), 1.5])))
    return tuple(vessels)


def _draw_gallbladder(rng: np.random.Generator, z: float) -> Ellipsoid | None:
    """Under the liver near the pancreas's level z (mm); absent in 15 % of patients."""
    u = rng.uniform
    if rng.random() >= 0.85:
        return None
    return Ellipsoid(
        (u(-60, -35), u(-55, -30), z + u(-15, 10)),
        (u(12, 18), u(13, 20), u(25, 40)),
        frame((u(-0.3, 0.3), u(-0.6, -0.2), 1.0), (1, 0, 0)),
    )


def _draw_stomach(rng: np.random.Generator) -> Stomach:
    """The stomach's body high on the left, in front of the spleen, with its air-fluid level."""
    u = rng.uniform
    body = Ellipsoid(
        (u(35, 60), u(-50, -20), u(85, 115)),
        (u(38, 55), u(32, 45), u(45, 65)),
        frame((u(-0.4, 0.2), u(-0.5, 0.1), 1.0), (1, 0, 0)),
    )
    return Stomach(body, air_level=u(0.1, 0.8))


def _draw_duodenum(rng: np.random.Generator, z: float) -> Tube:
    """The C-loop round the pancreas's head, from the bulb at the pancreas's level z (mm) down and back up."""
    u = rng.uniform
    points = np.array(
        [
            (u(-10, 5), -45, z + 20),
            (u(-35, -25), -30, z + 15),
            (-50, u(-15, 0), z - 5),
            (-45, u(-10, 5), z - 45),
            (-10, u(-10, 0), z - 60),
            (u(20, 30), u(-15, -5), z - 45),
            (u(25, 35), -20, z - 15),
        ]
    )
    return Tube(points, np.full(7, u(9, 13)))


def _draw_colon(rng: np.random.Generator, body: Body, z: float) -> Tube:
    """Ascending, transverse (below the pancreas's level z, mm) and descending colon along the cavity's sides."""
    u = rng.uniform
    ac, bc = body.cavity[0], body.cavity[1]
    points = np.array(
        [
            (-ac + 30, u(-20, 10), -220),
            (-ac + 28, u(-10, 10), -60),
            (-ac + 40, -20, z - 20),
            (-30, -bc + 35, u(-40, 0)),
            (30, -bc + 35, u(-40, 0)),
            (ac - 35, -25, z + u(0, 30)),
            (ac - 28, u(0, 25), -60),
            (ac - 30, u(-20, 10), -180),
            (20, -20, -230),
        ]
    )
    return Tube(points, np.full(9, u(18, 26)))


def _draw_bladder(rng: np.random.Generator) -> Ellipsoid:
    """The bladder low in the midline, 220-260 mm below the renal hila."""
    u = rng.uniform
    return Ellipsoid((0.0, u(-60, -30), u(-260, -220)), (u(35, 55), u(30, 45), u(30, 45)))


def _draw_iliac_wings(rng: np.random.Generator) -> tuple[Ellipsoid, ...]:
    """Right then left iliac wing (flat ellipsoids of cortex round marrow)."""
    u = rng.uniform
    return tuple(
        Ellipsoid((side * u(80, 100), u(30, 50), u(-185, -150)), (u(12, 16), u(45, 60), u(50, 65))) for side in (-1, 1)
    )


def _draw_heart(rng: np.random.Generator, diaphragm: Diaphragm) -> Ellipsoid:
    """The heart above the right dome."""
    u = rng.uniform
    return Ellipsoid((u(10, 30), u(-50, -25), diaphragm.right_dome_z + u(35, 55)), (u(60, 75), u(45, 55), u(50, 60)))


def _draw_ribs(rng: np.random.Generator) -> Ribs:
    """14 ribs from the 12th upwards, 23-28 mm apart at the back, each descending anteriorly."""
    u = rng.uniform
    z12 = u(0, 30)
    ribs = tuple(Rib(z12 + k * u(23, 28), u(90, 140), 100 + 25 * min(k, 3) + u(-10, 10)) for k in range(14))
    return Ribs(ribs, half_thickness=u(3.5, 5), half_height=u(5, 7))
