"""Synthesize CT from real whole-anatomy label maps, SynthSeg style (the phantom's "labels" mode).

A template label map (phantom/templates.py) is deformed by a random affine and a smooth elastic field
(nearest-neighbour resampling), a body outline (subcutaneous fat, abdominal wall muscle, visceral fat) is added
around the labelled anatomy, and every class gets a random Hounsfield-like mean drawn around the real range of its
tissue, texture, noise, blur and slice thickness.

Arrays are numpy zyx; SimpleITK geometry xyz; mm.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtri

from phantom.grid import CanonicalGrid, SmoothField
from phantom.hu_table import TISSUE_ID_V3, draw_case_hu
from phantom.imaging import TextureFields, draw_imaging, draw_imaging_v3, render_into, slab_ranges
from phantom.template_extras import (
    BOWEL_WALL_X,
    BOWEL_X,
    EXTRA_LABEL_V4,
    EXTRA_TISSUE_V4,
    GUT_FAT_X,
    GUT_WALL_X,
    GUT_WORDS,
    MEDULLA_X,
)
from phantom.template_split import anatomy_dirs, split_templates
from phantom.templates import (
    CANAL,
    CORTEX,
    DISC,
    FAT,
    FIRST_EXTRA,
    GAS,
    MARROW,
    N_CLASSES,
    PANCREAS_FAT,
    PARASPINAL,
    VISCERAL,
    WALL,
    Template,
    class_tissue,
    flare_label,
    list_templates,
    load_template,
    select_templates,
)
from phantom.tissues import PHASES, TISSUE_ID, TISSUES

_GASSY_WORDS = ("bowel", "colon", "duodenum", "stomach", "rectum")

# version 3: class names whose tissue differs from class_tissue's (tissues version 2 lacks), first match wins
_NAME_TISSUE_V3 = (("prostate_or_uterus", "uterus"), ("prostate", "prostate"), ("uterus", "uterus"))


_EXTRA_TISSUE = {
    FAT: "fat_subcutaneous",
    WALL: "muscle",
    VISCERAL: "fat_visceral",
    GAS: "gas",
    DISC: "disc",
    CORTEX: "bone_cortex",
    MARROW: "bone_marrow",
    CANAL: "spinal_canal",
    PARASPINAL: "muscle",
    PANCREAS_FAT: "pancreas_fat",
}


def _tables(tpl: Template, draw: Callable[[str], tuple[float, float, float]], tissue_of: Callable[[str], str], extras):
    """(mean, fine texture std, coarse texture std, FLARE label, gassy) arrays (N_CLASSES,): draw(tissue) ->
    (mean, fine, coarse) HU for air, every template class (its tissue: tissue_of(class name)) and `extras` (class id,
    tissue), in that order."""
    mean = np.zeros(N_CLASSES, np.float32)
    fine = np.full(N_CLASSES, 5.0, np.float32)
    coarse = np.zeros(N_CLASSES, np.float32)
    label = np.zeros(N_CLASSES, np.uint8)
    gassy = np.zeros(N_CLASSES, bool)
    mean[0], fine[0], coarse[0] = draw("air")
    for cid, name in tpl.names.items():
        if cid < FIRST_EXTRA:
            mean[cid], fine[cid], coarse[cid] = draw(tissue_of(name))
            label[cid] = flare_label(name)
            gassy[cid] = any(w in name for w in _GASSY_WORDS)
    for cid, tissue in extras:
        mean[cid], fine[cid], coarse[cid] = draw(tissue)
    return mean, fine, coarse, label, gassy


def class_tables_v3(tpl: Template, rng: np.random.Generator, phase: str):
    """Version 3's (mean, fine, coarse, FLARE label, gassy) arrays (N_CLASSES,) and the pancreas's fat fraction: HU
    from phantom/hu_table.py's table.

    Every class takes its tissue's case mean (one draw per tissue and case, so both kidneys match) plus a few HU;
    bones mix cortex and marrow; fatty liver / fatty pancreas variants as in the phantom mode.
    """
    variants = tuple(v for v, p in (("fatty_liver", 0.15), ("fatty_pancreas", 0.25)) if rng.random() < p)
    hu, tex_f, tex_c = draw_case_hu(rng, phase, variants)

    def draw(tissue: str) -> tuple[float, float, float]:
        if tissue == "bone":
            c, m = TISSUE_ID_V3["bone_cortex"], TISSUE_ID_V3["bone_marrow"]
            return hu[m] + rng.uniform(0.1, 0.4) * (hu[c] - hu[m]), rng.uniform(40, 120), rng.uniform(10, 40)
        t = TISSUE_ID_V3[tissue]
        return hu[t] + rng.normal(0, 3), tex_f[t], tex_c[t]

    def tissue_of(name: str) -> str:
        v3 = [t for w, t in _NAME_TISSUE_V3 if w in name]
        return v3[0] if v3 else class_tissue(name)

    mean, fine, coarse, label, gassy = _tables(tpl, draw, tissue_of, _EXTRA_TISSUE.items())
    label[PANCREAS_FAT] = 4
    return mean, fine, coarse, label, gassy, 0.4 if "fatty_pancreas" in variants else rng.uniform(0.0, 0.12)


# version 4: what fills each part of the gut inside its wall, per case and organ (tissue, probability); the wall
# tissue itself stands for a collapsed or thick-walled segment, which looks like soft tissue beside the pancreas
_GUT_CONTENT = (
    ("stomach", (("gastric_fluid", 0.35), ("gastric_food", 0.25), ("oral_contrast", 0.15), ("stomach_wall", 0.25))),
    ("duodenum", (("bowel_content", 0.45), ("oral_contrast", 0.2), ("bowel_wall", 0.35))),
    ("small_bowel", (("bowel_content", 0.45), ("oral_contrast", 0.25), ("bowel_wall", 0.3))),
    ("colon", (("stool", 0.6), ("oral_contrast", 0.15), ("bowel_wall", 0.25))),
    ("rectum", (("stool", 0.6), ("oral_contrast", 0.1), ("bowel_wall", 0.3))),
)


# version 5: the chance that a gut segment (each labelled gut class, and the synthetic bowel) looks like the pancreas
MIMIC_P = 0.35


def class_tables_v4(tpl: Template, rng: np.random.Generator, phase: str, mimic: bool = False):
    """Version 4's (mean, fine, coarse, FLARE label, gassy) arrays (N_CLASSES,) and the pancreas's fat fraction:
    version 3's table and variants, plus the classes phantom/template_extras.py paints (kidney medulla, psoas,
    aorta, IVC, lung bases, synthetic bowel: positive oral contrast in 25 % of cases; the gut's wall), the gut's
    content drawn per organ (_GUT_CONTENT: fluid, food, stool, oral contrast, or collapsed as wall), and the urinary
    bladder filled with excreted contrast (`urine_excreted`: dense in the delayed phase only) in 70 % of cases.

    mimic (version 5): each gut class (and the synthetic bowel) with probability MIMIC_P takes the case's pancreas
    HU (+- 8 HU) and texture, without gas: food, chyme or a collapsed loop that looks like the pancreas, so that
    only position and shape tell them apart. Returns a seventh array, (N_CLASSES,) bool: the classes so painted
    (render_case_v4 gives them the pancreas's interlobular fat, as GUT_FAT_X, label 0); all False without mimic."""
    variants = tuple(v for v, p in (("fatty_liver", 0.15), ("fatty_pancreas", 0.25)) if rng.random() < p)
    hu, tex_f, tex_c = draw_case_hu(rng, phase, variants)
    bladder = "urine_excreted" if rng.random() < 0.7 else "urine"
    bowel = "oral_contrast" if rng.random() < 0.25 else "bowel_content"

    def draw(tissue: str) -> tuple[float, float, float]:
        if tissue == "bone":
            c, m = TISSUE_ID_V3["bone_cortex"], TISSUE_ID_V3["bone_marrow"]
            return hu[m] + rng.uniform(0.1, 0.4) * (hu[c] - hu[m]), rng.uniform(40, 120), rng.uniform(10, 40)
        t = TISSUE_ID_V3[tissue]
        return hu[t] + rng.normal(0, 3), tex_f[t], tex_c[t]

    def tissue_of(name: str) -> str:
        if "urinary_bladder" in name:
            return bladder
        for word, choices in _GUT_CONTENT:
            if word in name:
                tissues, p = zip(*choices)
                return str(rng.choice(tissues, p=p))
        v3 = [t for w, t in _NAME_TISSUE_V3 if w in name]
        return v3[0] if v3 else class_tissue(name)

    extras = [*_EXTRA_TISSUE.items(), *EXTRA_TISSUE_V4.items()]
    extras = [(cid, bowel if cid == BOWEL_X else t) for cid, t in extras]
    mean, fine, coarse, label, gassy = _tables(tpl, draw, tissue_of, extras)
    label[PANCREAS_FAT] = 4
    for cid, lab in EXTRA_LABEL_V4.items():
        label[cid] = lab
    gassy[BOWEL_X] = bowel == "bowel_content"
    fat_frac = 0.4 if "fatty_pancreas" in variants else rng.uniform(0.0, 0.12)
    mimics = np.zeros(N_CLASSES, bool)
    if mimic:
        gut = [c for c, nm in tpl.names.items() if c < FIRST_EXTRA and any(w in nm for w, _ in _GUT_CONTENT)]
        p = TISSUE_ID_V3["pancreas"]
        for cid in [*gut, BOWEL_X]:
            if rng.random() < MIMIC_P:
                mean[cid], fine[cid], coarse[cid] = hu[p] + rng.normal(0, 8), tex_f[p], tex_c[p]
                mimics[cid], gassy[cid] = True, False
        mean[GUT_FAT_X], fine[GUT_FAT_X], coarse[GUT_FAT_X] = (
            mean[PANCREAS_FAT],
            fine[PANCREAS_FAT],
            coarse[PANCREAS_FAT],
        )
    return mean, fine, coarse, label, gassy, fat_frac, mimics


def class_tables(tpl: Template, rng: np.random.Generator, phase: str):
    """(mean, fine texture std, coarse texture std, FLARE label, gassy) arrays (N_CLASSES,) for a case."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    p = PHASES.index(phase)

    def draw(tissue: str) -> tuple[float, float, float]:
        if tissue == "bone":
            return rng.uniform(250, 550), rng.uniform(40, 120), rng.uniform(10, 40)
        t = TISSUES[TISSUE_ID[tissue]]
        spread = max(2 * t.spread, 12.0)
        mean = t.hu[p] + spread * rng.standard_normal()
        return mean, t.tex_fine * rng.uniform(0.5, 2.0), t.tex_coarse * t.coarse_phase[p] * rng.uniform(0.5, 2.0)

    extras = [(cid, tissue) for cid, tissue in _EXTRA_TISSUE.items() if cid != PANCREAS_FAT]  # version 3's only
    mean, fine, coarse, label, gassy = _tables(tpl, draw, class_tissue, extras)
    if phase == "arterial":
        for cid, name in tpl.names.items():
            if class_tissue(name) == "aorta":
                mean[cid] = rng.uniform(180, 420)
    return mean, fine, coarse, label, gassy


def _rotation(rng: np.random.Generator) -> np.ndarray:
    ax, ay, az = (
        np.deg2rad(rng.uniform(-4, 4)),
        np.deg2rad(rng.uniform(-4, 4)),
        np.deg2rad(rng.uniform(-8, 8)),
    )
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _tables_and_imaging(tpl: Template, rng: np.random.Generator, phase: str, sz: float, version: int):
    """(FLARE label lut, gassy flags, ImagingParams, pancreas-fat threshold of the fine field, pancreas-like gut
    classes ((N_CLASSES,) bool, version 5; else all False)) of a case."""
    none = np.zeros(N_CLASSES, bool)
    if version == 2:
        mean, fine_sd, coarse_sd, lut, gassy = class_tables(tpl, rng, phase)
        imaging = draw_imaging(rng, mean, fine_sd, coarse_sd, sz)
        imaging.blur_z_vox = float(rng.uniform(0.3, 1.0))  # random slice thickness
        return lut, gassy, imaging, np.inf, none
    if version == 3:
        mean, fine_sd, coarse_sd, lut, gassy, fat_frac = class_tables_v3(tpl, rng, phase)
        mimics = none
    else:
        mean, fine_sd, coarse_sd, lut, gassy, fat_frac, mimics = class_tables_v4(tpl, rng, phase, mimic=version >= 5)
    imaging = draw_imaging_v3(rng, mean, fine_sd, coarse_sd, sz)
    return lut, gassy, imaging, float(ndtri(1 - fat_frac)) if fat_frac > 0 else np.inf, mimics


def synthesize_canonical(
    rng: np.random.Generator,
    size_xy: int,
    n: int,
    spacing_xyz,
    phase: str,
    templates: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    version: int = 2,
    select: tuple[Sequence[str], Sequence[str]] = ((), ()),
    split: str = "all",
):
    """Labels mode on a canonical grid: (image int16 zyx, label uint8 zyx, CanonicalGrid, template file name).

    The grid is size_xy x size_xy in-plane at spacing_xyz, centred on a random template (of those `select` =
    (only, exclude) keeps, see select_templates); n slices, fewer (or the slice spacing lowered, not below 0.5 mm)
    where the template's z extent is shorter than n * spacing_z. Version 2 samples the slices holding FLARE organs
    and draws HU around phantom/tissues.py's means; version 3 samples every slice with a body and draws HU from
    phantom/hu_table.py's table, with its scanner model (draw_imaging_v3) and the pancreas's interlobular fat.
    Version 4 (`_synthesize_v4`) reads the templates of `split` (phantom/template_split.py) from `templates` (a
    folder or several; default the shared data's anatomy/ and templates/) and adds what the maps leave unlabelled;
    version 5 also paints some gut segments like the pancreas (class_tables_v4's mimic).
    """
    if version >= 4:
        return _synthesize_v4(rng, size_xy, n, spacing_xyz, phase, templates, select, split, version)
    paths = select_templates(list_templates(templates), *select)
    tpl = load_template(str(paths[int(rng.integers(len(paths)))]))
    z_range = tpl.good_range if version == 2 else tpl.body_range  # template slices with a well-filled body
    grid = _draw_grid(rng, tpl, z_range, size_xy, n, spacing_xyz)
    warp = _draw_warp(rng, tpl, grid, z_range)
    tex = TextureFields(rng, grid)
    lut, gassy, imaging, fat_thr, _ = _tables_and_imaging(tpl, rng, phase, grid.spacing_xyz[2], version)
    pancreas_ids = np.array([flare_label(tpl.names.get(i, "")) == 4 for i in range(N_CLASSES)])
    gas_thr = rng.uniform(0.5, 1.5)
    image = np.empty(grid.shape_zyx, np.int16)
    label = np.empty(grid.shape_zyx, np.uint8)
    for ranges in slab_ranges(grid.shape_zyx[0]):
        a0, a1 = ranges[2:]
        cls = warp.classes(tpl, grid, a0, a1)
        fine = tex.fine.slab(a0, a1)
        cls[gassy[cls] & (fine > gas_thr)] = GAS
        if fat_thr < np.inf:  # interlobular fat where the fine field is high (its 1 - fraction quantile)
            cls[pancreas_ids[cls] & (fine > fat_thr)] = PANCREAS_FAT
        render_into(image, label, lut, cls, ranges, (fine, tex.coarse.slab(a0, a1)), imaging, grid.spacing_xyz)
    return image, label, grid, tpl.path.name


def _synthesize_v4(rng, size_xy, n, spacing_xyz, phase, templates, select, split, version=4):
    """Version 4's (and 5's) labels mode (see synthesize_canonical): draw_case_v4, then render_case_v4."""
    case = draw_case_v4(rng, size_xy, n, spacing_xyz, phase, templates, select, split, version)
    image, label = render_case_v4(case)
    return image, label, case.grid, case.template.path.name


@dataclass(frozen=True)
class CaseV4:
    """Everything drawn for one version-4 labels-mode case; render_case_v4 turns it into image and label.

    template, grid, warp (the deformation, Warp.v4 set), texture (fine, coarse fields), lut (FLARE label per class,
    (N_CLASSES,) uint8), gassy ((N_CLASSES,) bool), imaging (HU tables and scanner), fat_thr / gas_thr (fine-field
    thresholds of the pancreas's interlobular fat and of bowel gas), medulla_mm (kidney depth, mm, beyond which
    the medulla lies), wall_mm (the gut's wall thickness, mm), bowel (a SmoothField) and bowel_thr (its
    threshold; inf: the map labels its own bowel), mimics ((N_CLASSES,) bool: the gut classes painted like the
    pancreas, version 5).
    """

    template: Template
    grid: CanonicalGrid
    warp: Warp
    texture: TextureFields
    lut: np.ndarray
    gassy: np.ndarray
    imaging: object
    fat_thr: float
    gas_thr: float
    medulla_mm: float
    wall_mm: float
    bowel: SmoothField
    bowel_thr: float
    mimics: np.ndarray


def draw_case_v4(
    rng, size_xy, n, spacing_xyz, phase, templates=None, select=((), ()), split="all", version=4
) -> CaseV4:
    """The random draws of a version-4 case: a template of `split` (from `templates`: a folder or several, default
    the shared anatomy/ and templates/), its grid and deformation (a squarer body outline, 2.0-3.2), HU tables and
    scanner, the medulla depth (4-8 mm) and, for maps without labelled bowel, a bowel field filling 35-70 % of the
    visceral fat. version 5 adds the pancreas-like gut segments (class_tables_v4's mimic)."""
    folders = templates if templates is not None else anatomy_dirs()
    paths = split_templates(select_templates(list_templates(folders), *select), split)
    tpl = load_template(str(paths[int(rng.integers(len(paths)))]))
    window = tpl.good_range if rng.random() < 0.75 else tpl.body_range  # mostly the organs, else anywhere
    grid = _draw_grid(rng, tpl, window, size_xy, n, spacing_xyz)
    warp = replace(_draw_warp(rng, tpl, grid, tpl.body_range), power=float(rng.uniform(2.0, 3.2)), v4=True)
    tex = TextureFields(rng, grid)
    lut, gassy, imaging, fat_thr, mimics = _tables_and_imaging(tpl, rng, phase, grid.spacing_xyz[2], version)
    gas_thr = float(rng.uniform(0.5, 1.5))
    medulla_mm = float(rng.uniform(4.0, 8.0))
    wall_mm = float(rng.uniform(2.0, 4.0))
    has_bowel = any(w in nm for nm in tpl.names.values() for w in ("bowel", "colon"))
    bowel = SmoothField(rng, grid, float(rng.uniform(18, 30)))
    bowel_thr = np.inf if has_bowel else float(rng.uniform(-0.5, 0.4))
    return CaseV4(
        tpl, grid, warp, tex, lut, gassy, imaging, fat_thr, gas_thr, medulla_mm, wall_mm, bowel, bowel_thr, mimics
    )


def render_case_v4(case: CaseV4) -> tuple[np.ndarray, np.ndarray]:
    """(image int16 zyx HU, label uint8 zyx) of a drawn case, slab by slab: the kidney medulla where the kidney is
    deeper than medulla_mm (irregular by the fine field), bowel wall and content in the visceral fat where the bowel
    field passes bowel_thr, the gut's wall within wall_mm of its surface, gas in gassy classes, the pancreas's fat
    (and the same fat in the pancreas-like gut, version 5); then the scanner."""
    tpl, grid = case.template, case.grid
    names = [tpl.names.get(i, "") for i in range(N_CLASSES)]
    pancreas_ids = np.array([flare_label(nm) == 4 for nm in names])
    kidney_ids = np.array([flare_label(nm) == 2 for nm in names])
    gut_ids = np.array([any(w in nm for w in GUT_WORDS) for nm in names])
    image = np.empty(grid.shape_zyx, np.int16)
    label = np.empty(grid.shape_zyx, np.uint8)
    for ranges in slab_ranges(grid.shape_zyx[0]):
        a0, a1 = ranges[2:]
        cls, idx = case.warp.classes_and_index(tpl, grid, a0, a1)
        fine = case.texture.fine.slab(a0, a1)
        depth = tpl.depth[idx]
        cls[kidney_ids[cls] & (depth > case.medulla_mm + 2.5 * fine)] = MEDULLA_X
        cls[gut_ids[cls] & (depth <= case.wall_mm)] = GUT_WALL_X
        if case.bowel_thr < np.inf:
            f = case.bowel.slab(a0, a1)
            vis = cls == VISCERAL
            cls[vis & (f > case.bowel_thr) & (f <= case.bowel_thr + 0.35)] = BOWEL_WALL_X
            cls[vis & (f > case.bowel_thr + 0.35)] = BOWEL_X
        cls[case.gassy[cls] & (fine > case.gas_thr)] = GAS
        if case.fat_thr < np.inf:
            cls[case.mimics[cls] & (fine > case.fat_thr)] = GUT_FAT_X
            cls[pancreas_ids[cls] & (fine > case.fat_thr)] = PANCREAS_FAT
        texture = (fine, case.texture.coarse.slab(a0, a1))
        render_into(image, label, case.lut, cls, ranges, texture, case.imaging, grid.spacing_xyz)
    return image, label


def _draw_grid(
    rng: np.random.Generator, tpl: Template, z_range: tuple[int, int], size_xy: int, n: int, spacing_xyz
) -> CanonicalGrid:
    """The canonical grid centred in-plane on the template (+-10 mm), its n slices (fewer, or closer, where the
    template slices z_range are shorter) at a drawn z inside them."""
    sx, sy, sz = spacing_xyz
    kz_lo, kz_hi = z_range
    zk = [float(tpl.origin[2] + (tpl.direction @ (np.array([0, 0, k]) * tpl.spacing))[2]) for k in (kz_lo, kz_hi)]
    zlo, zhi = min(zk), max(zk)
    extent_z = zhi - zlo + tpl.spacing[2]
    if n * sz > extent_z:
        sz_fit = extent_z / n
        if sz_fit >= 0.5:
            sz = sz_fit
        else:
            n = max(1, int(extent_z // sz))
    centre = (tpl.lo + tpl.hi) / 2
    z_first = zlo - tpl.spacing[2] / 2 + sz / 2
    z0 = rng.uniform(z_first, max(z_first, zhi + tpl.spacing[2] / 2 - (n - 0.5) * sz))
    return CanonicalGrid(
        shape_zyx=(n, size_xy, size_xy),
        spacing_xyz=(sx, sy, sz),
        origin_xyz=(
            centre[0] - (size_xy - 1) * sx / 2 + rng.uniform(-10, 10),
            centre[1] - (size_xy - 1) * sy / 2 + rng.uniform(-10, 10),
            z0,
        ),
    )


@dataclass(frozen=True)
class Warp:
    """Where each output voxel takes its class from: output point p -> template point c + M (p - c) + shift + u(p)
    (c: the template's centre, mm), and the body layers added round the labelled anatomy.

    matrix: M (3x3, a small rotation times a scaling of 0.9-1.1); shift: (3,) mm; displacement: the smooth fields
    u_x, u_y, u_z (mm) on the output grid; thickness: (subcutaneous fat, wall muscle, extra margin) mm
    (Template.body_layers); z_range: the template slices sampled (beyond them the edge slice repeats).
    """

    matrix: np.ndarray
    shift: np.ndarray
    displacement: tuple[SmoothField, SmoothField, SmoothField]
    thickness: tuple[float, float, float]
    z_range: tuple[int, int]
    power: float = 2.0
    v4: bool = False

    def classes(self, tpl: Template, grid: CanonicalGrid, a0: int, a1: int) -> np.ndarray:
        """uint8 classes (zyx) of canonical slices a0..a1-1: the template's (nearest neighbour), air outside it
        in-plane, body layers (FAT, WALL, VISCERAL) where the template holds air."""
        return self.classes_and_index(tpl, grid, a0, a1)[0]

    def classes_and_index(self, tpl: Template, grid: CanonicalGrid, a0: int, a1: int):
        """(classes, (k, j, i)): `classes` and the template voxel each output voxel took its class from (int32
        arrays of the slab's zyx shape). Version 4 (v4) samples Template.classes_v4, with a body outline of
        exponent `power` smoothed along z."""
        centre, m, shift = (tpl.lo + tpl.hi) / 2, self.matrix, self.shift
        inv = np.linalg.inv(tpl.direction) / tpl.spacing[:, None]  # world offset -> continuous index (xyz)
        xs, ys, zs = grid.axis_coords("x"), grid.axis_coords("y"), grid.axis_coords("z")
        shape_t = np.array(tpl.classes.shape[::-1])  # xyz
        p = [
            xs[None, None, :] - np.float32(centre[0]),
            ys[None, :, None] - np.float32(centre[1]),
            zs[a0:a1, None, None] - np.float32(centre[2]),
        ]
        u = [d.slab(a0, a1) for d in self.displacement]
        src = [
            np.float32(centre[i] + shift[i] - tpl.origin[i]) + u[i] + sum(np.float32(m[i, j]) * p[j] for j in range(3))
            for i in range(3)
        ]
        idx = []
        valid = np.ones(u[0].shape, bool)
        for i in range(3):
            c = np.rint(sum(np.float32(inv[i, j]) * src[j] for j in range(3))).astype(np.int32)
            if i < 2:  # outside the template in-plane: air; beyond its first / last slice: repeat the edge slice
                valid &= (c >= 0) & (c < shape_t[i])
            lo_i, hi_i = self.z_range if i == 2 else (0, shape_t[i] - 1)
            idx.append(np.clip(c, lo_i, hi_i))
        source = tpl.classes_v4 if self.v4 else tpl.classes
        cls = source[idx[2], idx[1], idx[0]]
        cls[~valid] = 0
        air = np.nonzero(valid & (cls == 0))
        if self.v4:
            cls[air] = tpl.body_layers(
                idx[2][air], idx[1][air], idx[0][air], self.thickness, power=self.power, smooth=True
            )
        else:
            cls[air] = tpl.body_layers(idx[2][air], idx[1][air], idx[0][air], self.thickness)
        return cls, (idx[2], idx[1], idx[0])


def _draw_warp(rng: np.random.Generator, tpl: Template, grid: CanonicalGrid, z_range: tuple[int, int]) -> Warp:
    """The body layers' thicknesses, then the affine part and the elastic field (50 mm lattice, 1.5-4 mm)."""
    t_fat, t_wall = rng.uniform(8, 35), rng.uniform(8, 14)
    thickness = (t_fat, t_wall, 0.0 if tpl.has_wall else rng.uniform(10, 25) + t_wall)
    m = _rotation(rng) @ np.diag(rng.uniform(0.9, 1.1, 3))
    shift = rng.uniform(-8, 8, 3)
    amp = rng.uniform(1.5, 4)
    disp = (SmoothField(rng, grid, 50.0, amp), SmoothField(rng, grid, 50.0, amp), SmoothField(rng, grid, 50.0, amp))
    return Warp(m, shift, disp, thickness, z_range)
