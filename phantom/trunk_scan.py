"""Version 3 of the phantom mode: a FLARE-like field of view over the whole trunk, four contrast phases,
reconstruction kernels and slice thicknesses.

Field of view, drawn per case: chest-abdomen-pelvis (lung apices to the lesser trochanters), abdomen-pelvis (lung
bases to the symphysis or the trochanters) or upper abdomen (dome to anywhere between the kidneys' lower poles and
the iliac crests); each bound jittered, so organs may be cut by the field's edges. When the drawn slices do not
reach across it, the scanned window lies anywhere inside it. The patient lies off-centre and may be wider than the
in-plane field.

Arrays numpy zyx; SimpleITK geometry xyz; millimetres.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from phantom.abdomen_scan import scan_phantom
from phantom.grid import CanonicalGrid, SmoothField, check_ranges
from phantom.hu_table import PHASES_V3, draw_case_hu, tissue_label_lut_v3
from phantom.imaging import TextureFields, draw_imaging_v3
from phantom.trunk import Trunk, draw_antrum, draw_trunk, landmarks, rasterize, with_antrum

FOV_KINDS = ("chest-abdomen-pelvis", "abdomen-pelvis", "upper-abdomen")
FOV_P = (0.25, 0.45, 0.30)


@dataclass(frozen=True)
class FieldOfView:
    """One of FLARE's fields of view (FOV_KINDS) and the z (mm, anatomy frame) of its top and bottom."""

    kind: str
    top: float
    bottom: float


def draw_fov(rng: np.random.Generator, t: Trunk) -> FieldOfView:
    """One of FLARE's fields of view for patient `t`."""
    m = landmarks(t)
    u = rng.uniform
    kind = FOV_KINDS[int(rng.choice(len(FOV_KINDS), p=FOV_P))]
    if kind == "chest-abdomen-pelvis":
        top, bottom = m.apex + u(-30, 20), u(m.lesser_trochanter - 30, m.symphysis)
    elif kind == "abdomen-pelvis":
        top, bottom = u(m.lung_base, m.dome + 40), u(m.lesser_trochanter - 20, m.symphysis + 20)
    else:
        top, bottom = u(m.dome - 30, m.dome + 60), u(m.iliac_crest - 20, m.kidney_low + 20)
    return FieldOfView(kind, float(top), float(bottom))


def draw_geometry(
    rng: np.random.Generator,
    fov: FieldOfView,
    size_xy: int,
    slices: int | None,
    slice_range: tuple[int, int],
    spacing: tuple[float, float, float] | None,
    spacing_xy_range: tuple[float, float] | None,
    spacing_z_range: tuple[float, float],
) -> CanonicalGrid:
    """The canonical grid: slice spacing drawn, slice count to cover the field (within slice_range), window inside."""
    xy = spacing_xy_range if spacing_xy_range is not None else (0.6 * 512 / size_xy, 1.0 * 512 / size_xy)
    check_ranges(slices=slice_range, spacing_xy=xy, spacing_z=spacing_z_range)
    if slices is not None and (not isinstance(slices, (int, np.integer)) or slices < 1):
        raise ValueError(f"slices must be a positive integer, got {slices!r}")
    if spacing is not None:
        sx, sy, sz = spacing
    else:
        sx = sy = float(rng.uniform(*xy))
        sz = float(rng.uniform(*spacing_z_range))
    extent = fov.top - fov.bottom
    n = slices if slices is not None else int(np.clip(round(extent / sz), slice_range[0], slice_range[1]))
    span = (n - 1) * sz
    if span <= extent:
        z0 = fov.bottom + rng.uniform(0, extent - span)
    else:
        z0 = 0.5 * (fov.top + fov.bottom) - span / 2
    return CanonicalGrid(
        shape_zyx=(n, size_xy, size_xy),
        spacing_xyz=(sx, sy, sz),
        origin_xyz=(
            -(size_xy - 1) * sx / 2 + rng.uniform(-40, 40),
            -(size_xy - 1) * sy / 2 + rng.uniform(-30, 50),
            z0,
        ),
        world_offset_xyz=(rng.uniform(-40, 40), rng.uniform(-60, 60), rng.uniform(-900, 100)),
    )


def generate_phantom_canonical_v3(
    rng: np.random.Generator,
    size_xy: int,
    phase: str,
    *,
    slices: int | None,
    slice_range: tuple[int, int],
    spacing: tuple[float, float, float] | None,
    spacing_xy_range: tuple[float, float] | None,
    spacing_z_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, CanonicalGrid, dict]:
    """Version-3 phantom on the canonical grid: (image int16 zyx, label uint8 zyx, grid, info dict)."""
    if phase not in PHASES_V3:
        raise ValueError(f"phase must be one of {PHASES_V3}, got {phase!r}")
    anat = draw_trunk(rng)
    fov = draw_fov(rng, anat)
    grid = draw_geometry(rng, fov, size_xy, slices, slice_range, spacing, spacing_xy_range, spacing_z_range)
    disp = [SmoothField(rng, grid, 45.0, rng.uniform(2, 6)) for _ in range(3)]
    tex = TextureFields(rng, grid)
    lattice = max(4.0, 1.5 * max(grid.spacing_xyz[:2]))
    extra = {"bowel1": SmoothField(rng, grid, 22.0), "bowel2": SmoothField(rng, grid, 22.0)}
    extra |= {"fat": SmoothField(rng, grid, lattice), "band": SmoothField(rng, grid, 14.0)}
    pt = anat.patient
    variants = tuple(v for v, on in (("fatty_liver", pt.fatty_liver), ("fatty_pancreas", pt.fatty_pancreas)) if on)
    imaging = draw_imaging_v3(rng, *draw_case_hu(rng, phase, variants), grid.spacing_xyz[2])
    anat = with_antrum(anat, draw_antrum(rng, anat))
    paint = functools.partial(rasterize, anat)
    image, label = scan_phantom(grid, paint, disp, tex, extra, imaging, tissue_label_lut_v3())
    info = {
        "field_of_view": fov.kind,
        "fatty_liver": pt.fatty_liver,
        "fatty_pancreas": pt.fatty_pancreas,
        "arms": "down" if pt.arms_down else "up",
        "oral_contrast": pt.oral,
        "sex_organ": anat.pelvis.sex_tissue,
        "kernel_sharpen": round(imaging.sharpen, 3),
        "slice_thickness_mm": round(imaging.blur_z_vox * 2.355 * grid.spacing_xyz[2], 2),
    }
    return image, label, grid, info
