"""Version 2 of the phantom mode: version 2's abdomen (phantom/anatomy.py, drawn by phantom/abdomen_draw.py,
painted by phantom/abdomen_paint.py) scanned inside its organ band, on a canonical grid of a drawn slice count and
spacing.

Arrays numpy zyx; SimpleITK geometry xyz; millimetres.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from phantom.abdomen_draw import draw_anatomy
from phantom.abdomen_paint import Fields, rasterize
from phantom.anatomy import Z_BAND
from phantom.grid import CanonicalGrid, SmoothField
from phantom.imaging import ImagingParams, TextureFields, draw_imaging, render_into, slab_ranges
from phantom.shapes import Slab
from phantom.tissues import draw_tissue_hu, tissue_label_lut


def _z_centre(rng: np.random.Generator, extent: float) -> float:
    """Centre (mm) of the scanned z range: inside the organ band, or covering it if longer."""
    lo, hi = Z_BAND
    band = hi - lo
    if extent >= band:
        return (lo + hi) / 2 + rng.uniform(-1, 1) * min(60.0, (extent - band) / 2)
    return rng.uniform(lo + extent / 2, hi - extent / 2)


def generate_phantom_canonical(
    rng: np.random.Generator, size_xy: int, n: int, spacing_xyz: tuple[float, float, float], phase: str
) -> tuple[np.ndarray, np.ndarray, CanonicalGrid]:
    """Phantom mode on the canonical grid: (image int16 zyx, label uint8 zyx, CanonicalGrid).

    size_xy x size_xy voxels in-plane, n slices, spacing_xyz (mm); phase one of phantom.tissues.PHASES.
    """
    sx, sy, sz = spacing_xyz
    extent = n * sz
    zc = _z_centre(rng, extent)
    grid = CanonicalGrid(
        shape_zyx=(n, size_xy, size_xy),
        spacing_xyz=(sx, sy, sz),
        origin_xyz=(
            -(size_xy - 1) * sx / 2 + rng.uniform(-15, 15),
            -(size_xy - 1) * sy / 2 + rng.uniform(-10, 25),
            zc - (n - 1) * sz / 2,
        ),
        world_offset_xyz=(rng.uniform(-40, 40), rng.uniform(-60, 60), rng.uniform(-900, 100)),
    )
    anat = draw_anatomy(rng)
    amp = rng.uniform(2, 6)
    disp = [SmoothField(rng, grid, 45.0, amp) for _ in range(3)]
    tex = TextureFields(rng, grid)
    bowel = {"bowel1": SmoothField(rng, grid, 22.0), "bowel2": SmoothField(rng, grid, 22.0)}
    mean, fine_sd, coarse_sd = draw_tissue_hu(rng, phase)
    imaging = draw_imaging(rng, mean, fine_sd, coarse_sd, sz)
    image, label = scan_phantom(grid, functools.partial(rasterize, anat), disp, tex, bowel, imaging, tissue_label_lut())
    _outside_reconstruction_circle(rng, image, label)
    return image, label, grid


def scan_phantom(
    grid: CanonicalGrid,
    paint: Callable[[Slab, Fields], np.ndarray],
    displacement: Sequence[SmoothField],
    texture: TextureFields,
    fields: dict[str, SmoothField],
    imaging: ImagingParams,
    lut: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(image int16 zyx, label uint8 zyx) of an analytic phantom on `grid`, slab by slab: the coordinates deformed
    by `displacement` (the x, y, z fields, mm), `paint(slab, fields)` -> tissue ids (the texture's fine field and
    `fields`, by name, on the slab), rendered by `imaging` and labelled lut[tissue]."""
    umax = [d.max_abs for d in displacement]
    xs, ys, zs = grid.axis_coords("x"), grid.axis_coords("y"), grid.axis_coords("z")
    image = np.empty(grid.shape_zyx, np.int16)
    label = np.empty(grid.shape_zyx, np.uint8)
    for ranges in slab_ranges(grid.shape_zyx[0]):
        a0, a1 = ranges[2:]
        slab = Slab(xs, ys, zs[a0:a1], *(d.slab(a0, a1) for d in displacement), umax)
        fine = texture.fine.slab(a0, a1)
        tissue = paint(slab, Fields(fine, **{k: f.slab(a0, a1) for k, f in fields.items()}))
        render_into(image, label, lut, tissue, ranges, (fine, texture.coarse.slab(a0, a1)), imaging, grid.spacing_xyz)
    return image, label


def _outside_reconstruction_circle(rng: np.random.Generator, image: np.ndarray, label: np.ndarray) -> None:
    """Some scanners fill the corners outside the reconstructed circle with a padding value (in place)."""
    if rng.random() >= 0.3:
        return
    ny, nx = image.shape[1:]
    yy, xx = np.ogrid[:ny, :nx]
    out = ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2) > (min(nx, ny) / 2) ** 2
    image[:, out] = rng.choice([-1024, -2048, -3024])
    label[:, out] = 0
