"""The version-3 phantom's whole trunk: version 2's abdomen (phantom/anatomy.py) extended from the lung
apices to the thighs, with the pelvis (phantom/pelvis.py), a body outline that widens at the hips and
parts into the thighs, arms, and per-patient variants (fatty liver or pancreas, oral contrast, bowel filling).

LPS patient millimetres (+x left, +y posterior, +z superior), z = 0 at L1/L2. Tissue ids are version 3's
(phantom/hu_table.py), whose first ids are version 2's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from phantom import anatomy as v2
from phantom.hu_table import TISSUE_ID_V3 as T
from phantom.hu_table import tissue_label_lut_v3
from phantom.pelvis import Pelvis, draw_pelvis, paint_pelvis
from phantom.shapes import Slab, ellipsoid, paint

_LABEL = tissue_label_lut_v3()


@dataclass(frozen=True)
class Patient:
    """Per-patient choices of version 3 (drawn by `draw_trunk`)."""

    fatty_liver: bool
    fatty_pancreas: bool
    pancreas_fat_fraction: float  # fraction of the pancreas's voxels that are interlobular fat
    arms_down: bool
    arm: tuple[float, float, float]  # gap to the body's side, y of the arm's centre, arm radius (mm)
    hip: tuple[float, float]  # widening of the half-width and of the posterior half-depth at the hips
    z_apex: float  # lung apices
    oral: str  # "none", "water" or "positive"


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


def draw_trunk(rng: np.random.Generator) -> dict:
    """One random version-3 patient: version 2's anatomy dict, changed and extended (keys 'pelvis', 'patient')."""
    a = v2.draw_anatomy(rng)
    u = rng.uniform
    scale = u(1.0, 1.2)  # larger patients than version 2 draws: the body may leave the in-plane field
    for k in ("A", "Ba", "Bp"):
        a[k] *= scale
    a["cavity"] = (
        a["A"] - a["tf"] - a["tm"],
        a["Ba"] - a["tf"] - a["tm"],
        a["Bp"] - 0.5 * a["tf"] - a["tm"],
    )
    pelvis = draw_pelvis(rng, a)
    a["pelvis"] = pelvis
    a["bladder"], a["iliac_wings"], a["iliacs"] = None, [], []
    a["spine_z_min"], a["psoas_z_min"] = pelvis.z_s1, pelvis.z_s1 + 30
    a["colon"] = _colon(rng, a, pelvis)
    a["bowel_level"] = a["zp"] + u(-5, 35)  # jejunal loops up beside the pancreas
    a["small_bowel_rr"] = [(0.5, 0.15), (0.8, 0.45), (1.1, 0.8)][int(rng.integers(3))]
    oral = str(rng.choice(["none", "water", "positive"], p=[0.4, 0.25, 0.35]))
    a["oral_contrast"] = oral == "positive"
    stomach = ["gastric_fluid", "gastric_food", "oral_contrast" if oral == "positive" else "gastric_fluid"]
    a["gastric_content"] = T[stomach[int(rng.integers(3))]]
    colon = ["stool", "stool", "bowel_content", "oral_contrast" if oral == "positive" else "stool"]
    a["colon_fill"] = T[colon[int(rng.integers(4))]]
    fatty_pancreas = rng.random() < 0.25
    a["patient"] = Patient(
        fatty_liver=rng.random() < 0.15,
        fatty_pancreas=fatty_pancreas,
        pancreas_fat_fraction=u(0.3, 0.5) if fatty_pancreas else u(0.0, 0.12),
        arms_down=rng.random() < 0.3,
        arm=(u(5, 40), u(-20, 30), u(38, 50)),
        hip=(u(1.0, 1.12), u(1.0, 1.15)),
        z_apex=a["zR"] + u(150, 200),
        oral=oral,
    )
    return a


def draw_antrum(rng: np.random.Generator, a: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """The gastric antrum and pylorus: from the stomach's lower body across the front of the pancreas (a fat gap of
    4-12 mm) to the duodenal bulb. Returns the centre line (4, 3) xyz mm, its radii (4,) mm and the lumen's share of
    the radius (0: collapsed, a wall of soft tissue as thick as the antrum, which real scans often show and which
    looks like pancreas). Drawn after everything else of a case, so that the other draws of a seed stay as they were."""
    u = rng.uniform
    centre, axes, _, _ = a["stomach"]
    pts, rad = a["pancreas"]
    r, gap = u(11, 17), u(4, 12)
    line = [
        (centre[0] - u(0, 15), centre[1] - u(0, 10), centre[2] - u(0.5, 0.8) * axes[2]),
        (pts[2][0] + u(-5, 10), pts[2][1] - rad[2] - gap - r, pts[2][2] + u(5, 20)),
        (pts[1][0] + u(5, 15), pts[1][1] - rad[1] - gap - r, pts[1][2] + u(5, 15)),
        tuple(a["duodenum"][0][0]),
    ]
    lumen = 0.0 if rng.random() < 0.4 else u(0.3, 0.7)
    return np.array(line, float), np.array([1.2 * r, r, r, 0.8 * r]), lumen


def _colon(rng: np.random.Generator, a: dict, p: Pelvis) -> tuple[np.ndarray, np.ndarray]:
    """Cecum in the right iliac fossa, ascending, transverse, descending colon, sigmoid down to the rectum."""
    u = rng.uniform
    Ac, Bc = a["cavity"][0], a["cavity"][1]
    zp, z1 = a["zp"], p.z_s1
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
        tuple(p.rectum[0][0]),
    ]
    return np.array(pts, float), np.full(len(pts), u(18, 26))


def landmarks(a: dict) -> Landmarks:
    """The field-of-view levels of patient `a` (a `draw_trunk` dict)."""
    p: Pelvis = a["pelvis"]
    low = min(c[2] - ax[2] for c, ax, _ in a["kidneys"])
    return Landmarks(
        apex=a["patient"].z_apex,
        lung_base=a["zR"] - 70,
        dome=a["zR"],
        kidney_low=float(low),
        iliac_crest=p.z_s1 + 30,
        symphysis=p.z_symphysis,
        lesser_trochanter=p.z_lesser_trochanter,
    )


def paint_body(tissue: np.ndarray, slab: Slab, a: dict) -> v2.Regions:
    """Skin, fat, wall muscle and cavity of a body that widens at the hips and parts into the thighs below."""
    qx, qy, qz = slab.qx, slab.qy, slab.qz
    p: Pelvis = a["pelvis"]
    kx, kp = a["patient"].hip
    z_top, z_hip = p.z_s1 + 30, p.head[0][2]
    t = np.clip((z_top - qz) / np.float32(z_top - z_hip), 0, 1)
    A = a["A"] * (1 + (kx - 1) * t)
    Ba = a["Ba"] * (1 - 0.12 * t)
    Bp = a["Bp"] * (1 + (kp - 1) * t)
    sq = (qx * qx, qy * qy, qy < 0)
    z_split = z_hip - 35
    legs = qz < z_split

    def norm(dx, dya, dyp):
        trunk = v2.body_norm(sq, A - dx, Ba - dya, Bp - dyp)
        half = 0.5 * A
        ay = 0.45 * (Ba + Bp) - dya
        thigh = np.minimum((np.abs(qx) - half) ** 2 / (half + 10 - dx) ** 2, 1e3) + (qy / ay) ** 2
        return np.where(legs, thigh, trunk)

    tf = a["tf"]
    body = norm(0, 0, 0) < 1
    tissue[body] = T["skin"]
    tissue[norm(2, 2, 2) < 1] = T["fat_subcutaneous"]
    inner = norm(tf, tf, 0.5 * tf) < 1
    tissue[inner] = T["muscle"]
    Ac, Bac, Bpc = a["cavity"]
    z_floor = z_hip - 30
    f = 0.35 + 0.65 * np.clip((qz - z_floor) / np.float32(p.z_s1 - z_floor), 0, 1)
    cavity = (v2.body_norm(sq, Ac * f, Bac * f, Bpc) < 1) & (qz > z_floor)
    return v2.cavity_regions(tissue, slab, a, body, inner, cavity)


def rasterize(a: dict, slab: Slab, fields: dict) -> np.ndarray:
    """uint8 version-3 tissue ids (zyx, the slab's shape) of patient `a` on `slab`.

    fields: float32 zyx smooth fields on the slab: 'fine', 'bowel1', 'bowel2' (as version 2) and 'fat', 'band'
    (~N(0, 1); the pancreas's fat lobules and the spleen's arterial arcs).
    """
    tissue = np.zeros(slab.shape, np.uint8)
    v2.paint_table(tissue, slab, a)
    reg = paint_body(tissue, slab, a)
    v2.paint_thorax(tissue, slab, a, reg)
    neck = reg.thorax & (slab.qz > np.float32(a["patient"].z_apex))
    tissue[neck] = T["muscle"]
    v2.paint_viscera(tissue, slab, a, fields, reg)
    _organ_detail(tissue, slab, a, fields)
    v2.paint_skeleton(tissue, slab, a, reg)
    paint_pelvis(tissue, slab, a["pelvis"], _LABEL[tissue] == 0, reg.body)
    _paint_arms(tissue, slab, a, reg)
    return tissue


def _organ_detail(tissue: np.ndarray, slab: Slab, a: dict, fields: dict) -> None:
    """Inside the organs: the pancreas's interlobular fat, the spleen's arcs, the kidneys' collecting systems."""
    frac = a["patient"].pancreas_fat_fraction
    if frac > 0:
        fat = (tissue == T["pancreas"]) & (fields["fat"] > np.float32(ndtri(1 - frac)))
        tissue[fat] = T["pancreas_fat"]
    tissue[(tissue == T["spleen"]) & (np.abs(fields["band"]) < 0.3)] = T["spleen_band"]
    for c, ax, rows in a["kidneys"]:
        e = ellipsoid(slab, c, ax, rows)
        if e is not None:
            r, d, r2 = e
            paint(tissue, r, (tissue[r] == T["renal_sinus"]) & (r2 < 0.12) & (d[0] > 0.15 * ax[0]), T["renal_pelvis"])


def _paint_arms(tissue: np.ndarray, slab: Slab, a: dict, reg: v2.Regions) -> None:
    """Arms beside the body from the shoulders to the hips when down (skin, fat, muscle, humerus); none when up."""
    pt = a["patient"]
    if not pt.arms_down:
        return
    gap, y, ra = pt.arm
    outside = tissue == T["air"]
    for s in (-1.0, 1.0):
        c = (s * (a["A"] + gap + ra), y, 0.5 * (pt.z_apex - 20 + a["pelvis"].head[0][2]))
        half_z = 0.5 * (pt.z_apex - 20 - a["pelvis"].head[0][2])
        for scale, tid in ((1.0, "skin"), (0.95, "fat_subcutaneous"), (0.75, "muscle"), (0.28, "bone_cortex")):
            e = ellipsoid(slab, c, (ra * scale, ra * scale * 0.9, half_z))
            if e is not None:
                paint(tissue, e[0], e[2] < 1, T[tid], outside)
        e = ellipsoid(slab, c, (ra * 0.16, ra * 0.15, half_z))
        if e is not None:
            paint(tissue, e[0], e[2] < 1, T["bone_marrow"], outside)
