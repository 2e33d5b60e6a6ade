"""The version-3 phantom's whole trunk: version 2's abdomen (phantom/anatomy.py, drawn by phantom/abdomen_draw.py,
painted by phantom/abdomen_paint.py) extended from the lung apices to the thighs, with the pelvis
(phantom/pelvis.py), a body outline that widens at the hips and parts into the thighs, arms, and per-patient
variants (fatty liver or pancreas, oral contrast, bowel filling).

LPS patient millimetres (+x left, +y posterior, +z superior), z = 0 at L1/L2. Tissue ids are version 3's
(phantom/hu_table.py), whose first ids are version 2's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtri

from phantom import abdomen_paint as abdomen
from phantom.abdomen_draw import draw_anatomy
from phantom.abdomen_paint import Fields, Regions
from phantom.anatomy import Anatomy, Antrum, Body, Diaphragm
from phantom.hu_table import TISSUE_ID_V3 as T
from phantom.hu_table import tissue_label_lut_v3
from phantom.pelvis import Pelvis, draw_pelvis, paint_pelvis
from phantom.shapes import Slab, Tube, ellipsoid, paint

_LABEL = tissue_label_lut_v3()


@dataclass(frozen=True)
class Patient:
    """Per-patient choices of version 3 (drawn by `draw_trunk`).

    pancreas_fat_fraction: share of the pancreas's voxels that are interlobular fat. arm_gap: gap (mm) between the
    body's side and a lowered arm; arm_y: y (mm) of the arm's centre; arm_radius (mm). hip_width_gain,
    hip_depth_gain: factors on the body's half-width and posterior depth at the hips. z_apex: z (mm) of the lung
    apices. oral: oral contrast, "none", "water" or "positive".
    """

    fatty_liver: bool
    fatty_pancreas: bool
    pancreas_fat_fraction: float
    arms_down: bool
    arm_gap: float
    arm_y: float
    arm_radius: float
    hip_width_gain: float
    hip_depth_gain: float
    z_apex: float
    oral: str


@dataclass(frozen=True)
class Trunk:
    """One version-3 patient: version 2's anatomy (scaled and changed), the pelvis and the per-patient choices."""

    anatomy: Anatomy
    pelvis: Pelvis
    patient: Patient


@dataclass(frozen=True)
class Landmarks:
    """z (mm) of the levels that bound FLARE's fields of view."""

    apex: float
    lung_base: float
    dome: float
    kidney_low: float
    iliac_crest: float
    symphysis: float
    lesser_trochanter: float


def draw_trunk(rng: np.random.Generator) -> Trunk:
    """One random version-3 patient: version 2's anatomy drawn first, then changed and extended."""
    a = draw_anatomy(rng)
    u = rng.uniform
    scale = u(1.0, 1.2)  # larger patients than version 2 draws: the body may leave the in-plane field
    b = a.body
    a = replace(
        a,
        body=replace(
            b, half_width=b.half_width * scale, front_depth=b.front_depth * scale, back_depth=b.back_depth * scale
        ),
    )
    pelvis = draw_pelvis(rng, a)
    colon = _draw_colon(rng, a.body, a.pancreas.level_z, pelvis)
    small_bowel_top_z = a.pancreas.level_z + u(-5, 35)  # jejunal loops up beside the pancreas
    small_bowel_rr = [(0.5, 0.15), (0.8, 0.45), (1.1, 0.8)][int(rng.integers(3))]
    oral = str(rng.choice(["none", "water", "positive"], p=[0.4, 0.25, 0.35]))
    stomach = ["gastric_fluid", "gastric_food", "oral_contrast" if oral == "positive" else "gastric_fluid"]
    gastric_content = T[stomach[int(rng.integers(3))]]
    colon_fill = ["stool", "stool", "bowel_content", "oral_contrast" if oral == "positive" else "stool"]
    colon_content = T[colon_fill[int(rng.integers(4))]]
    patient = _draw_patient(rng, a.diaphragm, oral)
    bowel = replace(
        a.bowel,
        colon=colon,
        small_bowel_top_z=small_bowel_top_z,
        small_bowel_rr=small_bowel_rr,
        oral_contrast=oral == "positive",
        colon_content=colon_content,
    )
    a = replace(
        a,
        # the pelvis holds the lower spine's continuation, the bladder, the iliac wings and arteries
        spine=replace(a.spine, bottom_z=pelvis.promontory_z, psoas_bottom_z=pelvis.promontory_z + 30),
        vessels=replace(a.vessels, iliac_arteries=()),
        stomach=replace(a.stomach, content=gastric_content),
        bowel=bowel,
        bladder=None,
        iliac_wings=(),
    )
    return Trunk(a, pelvis, patient)


def _draw_patient(rng: np.random.Generator, diaphragm: Diaphragm, oral: str) -> Patient:
    """The variants (fatty organs, arms down) and the hips, arms and lung apices of one patient."""
    u = rng.uniform
    fatty_pancreas = rng.random() < 0.25
    return Patient(
        fatty_liver=rng.random() < 0.15,
        fatty_pancreas=fatty_pancreas,
        pancreas_fat_fraction=u(0.3, 0.5) if fatty_pancreas else u(0.0, 0.12),
        arms_down=rng.random() < 0.3,
        arm_gap=u(5, 40),
        arm_y=u(-20, 30),
        arm_radius=u(38, 50),
        hip_width_gain=u(1.0, 1.12),
        hip_depth_gain=u(1.0, 1.15),
        z_apex=diaphragm.right_dome_z + u(150, 200),
        oral=oral,
    )


def draw_antrum(rng: np.random.Generator, t: Trunk) -> Antrum:
    """The gastric antrum and pylorus: from the stomach's lower body across the front of the pancreas (a fat gap of
    4-12 mm) to the duodenal bulb. A centre line of 4 points with its radii, and the lumen's share of the radius
    (0: collapsed, a wall of soft tissue as thick as the antrum, which real scans often show and which looks like
    pancreas). Drawn after everything else of a case, so that the other draws of a seed stay as they were."""
    u = rng.uniform
    a = t.anatomy
    centre, axes, _ = a.stomach.body
    pts, rad = a.pancreas.centre_line
    r, gap = u(11, 17), u(4, 12)
    line = [
        (centre[0] - u(0, 15), centre[1] - u(0, 10), centre[2] - u(0.5, 0.8) * axes[2]),
        (pts[2][0] + u(-5, 10), pts[2][1] - rad[2] - gap - r, pts[2][2] + u(5, 20)),
        (pts[1][0] + u(5, 15), pts[1][1] - rad[1] - gap - r, pts[1][2] + u(5, 15)),
        tuple(a.bowel.duodenum.points[0]),
    ]
    lumen = 0.0 if rng.random() < 0.4 else u(0.3, 0.7)
    return Antrum(Tube(np.array(line, float), np.array([1.2 * r, r, r, 0.8 * r])), lumen)


def with_antrum(t: Trunk, antrum: Antrum) -> Trunk:
    """`t` with `antrum` in its stomach."""
    a = t.anatomy
    return replace(t, anatomy=replace(a, stomach=replace(a.stomach, antrum=antrum)))


def _draw_colon(rng: np.random.Generator, body: Body, z_pancreas: float, p: Pelvis) -> Tube:
    """Cecum in the right iliac fossa, ascending, transverse, descending colon, sigmoid down to the rectum."""
    u = rng.uniform
    Ac, Bc = body.cavity[0], body.cavity[1]
    zp, z1 = z_pancreas, p.promontory_z
    pts = [
        (-Ac + 40, u(-25, 0), z1 + u(-5, 15)),
        (-Ac + 28, u(-10, 10), -60),
        (-Ac + 40, -20, zp - 20),
        (-30, -Bc + 35, u(-40, 0)),
        (30, -Bc + 35, u(-40, 0)),
        (Ac - 35, -25, zp + u(0, 30)),
        (Ac - 28, u(0, 25), -60),
        (Ac - 35, u(-10, 10), z1 + 10),
        (u(20, 40), u(-50, -30), z1 - u(40, 60)),
        (u(-20, 0), u(-40, -20), z1 - u(30, 50)),
        tuple(p.rectum.points[0]),
    ]
    return Tube(np.array(pts, float), np.full(len(pts), u(18, 26)))


def landmarks(t: Trunk) -> Landmarks:
    """The field-of-view levels of patient `t`."""
    p = t.pelvis
    low = min(c[2] - ax[2] for c, ax, _ in t.anatomy.kidneys.both)
    return Landmarks(
        apex=t.patient.z_apex,
        lung_base=t.anatomy.diaphragm.right_dome_z - 70,
        dome=t.anatomy.diaphragm.right_dome_z,
        kidney_low=float(low),
        iliac_crest=p.promontory_z + 30,
        symphysis=p.z_symphysis,
        lesser_trochanter=p.z_lesser_trochanter,
    )


def paint_body(tissue: np.ndarray, slab: Slab, t: Trunk) -> Regions:
    """Skin, fat, wall muscle and cavity of a body that widens at the hips and parts into the thighs below."""
    qx, qy, qz = slab.qx, slab.qy, slab.qz
    p, b = t.pelvis, t.anatomy.body
    kx, kp = t.patient.hip_width_gain, t.patient.hip_depth_gain
    z_top, z_hip = p.promontory_z + 30, p.hip_z
    w = np.clip((z_top - qz) / np.float32(z_top - z_hip), 0, 1)
    A = b.half_width * (1 + (kx - 1) * w)
    Ba = b.front_depth * (1 - 0.12 * w)
    Bp = b.back_depth * (1 + (kp - 1) * w)
    sq = (qx * qx, qy * qy, qy < 0)
    z_split = z_hip - 35
    legs = qz < z_split

    def norm(dx, dya, dyp):
        trunk = abdomen.body_norm(sq, A - dx, Ba - dya, Bp - dyp)
        half = 0.5 * A
        ay = 0.45 * (Ba + Bp) - dya
        thigh = np.minimum((np.abs(qx) - half) ** 2 / (half + 10 - dx) ** 2, 1e3) + (qy / ay) ** 2
        return np.where(legs, thigh, trunk)

    tf = b.fat
    body = norm(0, 0, 0) < 1
    tissue[body] = T["skin"]
    tissue[norm(2, 2, 2) < 1] = T["fat_subcutaneous"]
    inner = norm(tf, tf, 0.5 * tf) < 1
    tissue[inner] = T["muscle"]
    Ac, Bac, Bpc = b.cavity
    z_floor = z_hip - 30
    f = 0.35 + 0.65 * np.clip((qz - z_floor) / np.float32(p.promontory_z - z_floor), 0, 1)
    cavity = (abdomen.body_norm(sq, Ac * f, Bac * f, Bpc) < 1) & (qz > z_floor)
    return abdomen.cavity_regions(tissue, slab, t.anatomy.diaphragm, body, inner, cavity)


def rasterize(t: Trunk, slab: Slab, fields: Fields) -> np.ndarray:
    """uint8 version-3 tissue ids (zyx, the slab's shape) of patient `t` on `slab`.

    fields: the smooth fields on the slab, fat and band included (the pancreas's fat lobules, the spleen's arcs).
    """
    a = t.anatomy
    tissue = np.zeros(slab.shape, np.uint8)
    abdomen.paint_table(tissue, slab, a.table, a.body)
    reg = paint_body(tissue, slab, t)
    abdomen.paint_thorax(tissue, slab, a.spine, a.heart, reg)
    neck = reg.thorax & (slab.qz > np.float32(t.patient.z_apex))
    tissue[neck] = T["muscle"]
    abdomen.paint_viscera(tissue, slab, a, fields, reg)
    _organ_detail(tissue, slab, t, fields)
    abdomen.paint_skeleton(tissue, slab, a, reg)
    paint_pelvis(tissue, slab, t.pelvis, _LABEL[tissue] == 0, reg.body)
    _paint_arms(tissue, slab, t, reg)
    return tissue


def _organ_detail(tissue: np.ndarray, slab: Slab, t: Trunk, fields: Fields) -> None:
    """Inside the organs: the pancreas's interlobular fat, the spleen's arcs, the kidneys' collecting systems."""
    frac = t.patient.pancreas_fat_fraction
    if frac > 0:
        fat = (tissue == T["pancreas"]) & (fields.fat > np.float32(ndtri(1 - frac)))
        tissue[fat] = T["pancreas_fat"]
    tissue[(tissue == T["spleen"]) & (np.abs(fields.band) < 0.3)] = T["spleen_band"]
    for c, ax, rows in t.anatomy.kidneys.both:
        e = ellipsoid(slab, c, ax, rows)
        if e is not None:
            r, d, r2 = e
            paint(tissue, r, (tissue[r] == T["renal_sinus"]) & (r2 < 0.12) & (d[0] > 0.15 * ax[0]), T["renal_pelvis"])


def _paint_arms(tissue: np.ndarray, slab: Slab, t: Trunk, reg: Regions) -> None:
    """Arms beside the body from the shoulders to the hips when down (skin, fat, muscle, humerus); none when up."""
    pt = t.patient
    if not pt.arms_down:
        return
    gap, y, ra = pt.arm_gap, pt.arm_y, pt.arm_radius
    outside = tissue == T["air"]
    z_hip = t.pelvis.hip_z
    for s in (-1.0, 1.0):
        c = (s * (t.anatomy.body.half_width + gap + ra), y, 0.5 * (pt.z_apex - 20 + z_hip))
        half_z = 0.5 * (pt.z_apex - 20 - z_hip)
        for scale, tid in ((1.0, "skin"), (0.95, "fat_subcutaneous"), (0.75, "muscle"), (0.28, "bone_cortex")):
            e = ellipsoid(slab, c, (ra * scale, ra * scale * 0.9, half_z))
            if e is not None:
                paint(tissue, e[0], e[2] < 1, T[tid], outside)
        e = ellipsoid(slab, c, (ra * 0.16, ra * 0.15, half_z))
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["bone_marrow"], outside)
