"""Voxel grids for synthetic CT: random geometry, orientations and smooth random fields.

Every synthetic volume is first built on a *canonical* grid whose numpy axes (0, 1, 2) run along the LPS patient axes (z
superior, y posterior, x left) with positive steps, then laid out in the output orientation by `to_output_array` /
`make_image`. Because the output direction is a signed permutation, this relayout is exact: every output voxel holds the
value computed at its own world position.

Conventions: numpy arrays zyx; SimpleITK sizes, spacings and origins xyz; millimetres throughout.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

# Signed permutation matrices as SimpleITK direction cosines (columns = world direction of the index axes x, y, z).
_IDENTITY = np.eye(3)
_FLARE = np.diag([-1.0, -1.0, 1.0])


def _all_signed_permutations() -> list[np.ndarray]:
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs, strict=True)):
                m[row, col] = sign
            mats.append(m)
    return mats


def orientation_set(kind: str) -> list[np.ndarray]:
    """Direction matrices (3x3, SimpleITK column convention) to draw from.

    kind: "canonical" (identity only), "axial" (the slice axis stays the patient z axis; in-plane flips and x/y swaps;
    identity and diag(-1,-1,1) weighted up, as most FLARE cases have one of them), or "any" (all 48 signed axis
    permutations, slices may then be sagittal or coronal).
    """
    if kind == "canonical":
        return [_IDENTITY]
    allm = _all_signed_permutations()
    if kind == "axial":
        axial = [m for m in allm if abs(m[2, 2]) == 1.0]
        return [_IDENTITY] * 4 + [_FLARE] * 4 + axial
    if kind == "any":
        return [_IDENTITY] * 8 + [_FLARE] * 8 + allm
    raise ValueError(f"orientations must be 'canonical', 'axial' or 'any', got {kind!r}")


@dataclass(frozen=True)
class CanonicalGrid:
    """An axis-aligned grid in LPS patient millimetres.

    shape_zyx: numpy shape (nz, ny, nx). spacing_xyz: mm. origin_xyz: LPS mm of voxel [0, 0, 0] in the anatomy frame.
    world_offset_xyz: added to anatomy coordinates to give scanner world coordinates (a table position).
    """

    shape_zyx: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    world_offset_xyz: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def axis_coords(self, axis: str) -> np.ndarray:
        """1-D float32 anatomy coordinates (mm) of the voxel centres along 'x', 'y' or 'z'."""
        i = "xyz".index(axis)
        n = self.shape_zyx[2 - i]
        return (self.origin_xyz[i] + self.spacing_xyz[i] * np.arange(n)).astype(np.float32)


def to_output_array(canonical: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Lay a canonical zyx array out as the zyx array of an image with `direction` (signed permutation)."""
    src_axes = []
    flips = []
    for a in range(3):  # SimpleITK index axis a (x, y, z) -> numpy axis 2 - a
        w = int(np.argmax(np.abs(direction[:, a])))
        src_axes.append(2 - w)
        flips.append(direction[w, a] < 0)
    # numpy axis order of the output: (z, y, x) = sitk axes (2, 1, 0)
    out = np.transpose(canonical, (src_axes[2], src_axes[1], src_axes[0]))
    for a in range(3):
        if flips[a]:
            out = np.flip(out, axis=2 - a)
    return np.ascontiguousarray(out)


def make_image(canonical: np.ndarray, grid: CanonicalGrid, direction: np.ndarray) -> sitk.Image:
    """SimpleITK image holding `canonical` (zyx, on `grid`) in the layout given by `direction` (3x3).

    The origin and spacing are set so that every voxel keeps its world position (anatomy + world offset).
    """
    direction = np.asarray(direction, dtype=float)
    arr = to_output_array(canonical, direction)
    n_xyz = np.array(grid.shape_zyx[::-1])
    sp_xyz = np.array(grid.spacing_xyz)
    corner = np.array(grid.origin_xyz, dtype=float) + np.array(grid.world_offset_xyz, dtype=float)
    spacing_out = []
    for a in range(3):
        w = int(np.argmax(np.abs(direction[:, a])))
        spacing_out.append(float(sp_xyz[w]))
        if direction[w, a] < 0:
            corner[w] += (n_xyz[w] - 1) * sp_xyz[w]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing_out)
    img.SetOrigin([float(c) for c in corner])
    img.SetDirection([float(v) for v in direction.ravel()])
    return img


def interp_index(n_fine: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo int64 (n_fine,), frac float32 (n_fine,)): fine sample i = (1 - frac) * c[lo] + frac * c[lo + 1]."""
    pos = np.linspace(0.0, n_coarse - 1.0, n_fine) if n_fine > 1 else np.zeros(1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n_coarse - 2)
    return lo, (pos - lo).astype(np.float32)


def _lerp(a: np.ndarray, axis: int, lo: np.ndarray, frac: np.ndarray) -> np.ndarray:
    shape = [1] * a.ndim
    shape[axis] = len(frac)
    f = frac.reshape(shape)
    a0 = np.take(a, lo, axis=axis)
    a1 = np.take(a, lo + 1, axis=axis)
    a1 -= a0
    a1 *= f
    a1 += a0
    return a1


class SmoothField:
    """A smooth random scalar field on a canonical grid: Gaussian noise on a coarse lattice, linearly interpolated.

    Evaluated slab by slab (`slab(k0, k1)` -> float32 (k1-k0, ny, nx)) by separable interpolation, so a full field never
    needs to exist in memory. Values are roughly N(0, 1) times `amplitude`.
    """

    def __init__(self, rng: np.random.Generator, grid: CanonicalGrid, lattice_mm: float, amplitude: float = 1.0):
        nz, ny, nx = grid.shape_zyx
        sx, sy, sz = grid.spacing_xyz
        dims = [max(2, int(np.ceil(n * s / lattice_mm)) + 2) for n, s in ((nz, sz), (ny, sy), (nx, sx))]
        coarse = rng.standard_normal(dims).astype(np.float32)
        coarse = gaussian_filter(coarse, 0.7, mode="wrap")
        coarse /= max(float(coarse.std()), 1e-6)
        self.coarse = coarse * np.float32(amplitude)
        self.iz = interp_index(nz, dims[0])
        self.iy = interp_index(ny, dims[1])
        self.ix = interp_index(nx, dims[2])
        self.max_abs = float(np.abs(self.coarse).max())

    def slab(self, k0: int, k1: int) -> np.ndarray:
        lo, frac = self.iz[0][k0:k1], self.iz[1][k0:k1]
        a = _lerp(self.coarse, 0, lo, frac)  # (k, cy, cx)
        a = _lerp(a, 2, *self.ix)  # (k, cy, nx)
        return _lerp(a, 1, *self.iy)  # (k, ny, nx)


def check_ranges(**ranges: tuple[float, float]) -> None:
    """ValueError unless every (low, high) satisfies 0 < low <= high."""
    for name, (lo, hi) in ranges.items():
        if not 0 < lo <= hi:
            raise ValueError(f"{name} range must satisfy 0 < low <= high, got {(lo, hi)}")


def draw_spacing(
    rng: np.random.Generator,
    size_xy: int,
    slices: tuple[int, int],
    spacing_xy: tuple[float, float] | None,
    spacing_z: tuple[float, float],
    max_extent_z: float,
) -> tuple[int, float, float]:
    """Draw (slice count, in-plane spacing mm, slice spacing mm).

    spacing_xy None: the range (0.6, 1.0) mm scaled by 512 / size_xy, so the field of view stays 307-512 mm.
    The slice spacing's upper bound is lowered where needed so that slices * spacing_z <= max_extent_z (mm).
    """
    if spacing_xy is None:
        spacing_xy = (0.6 * 512 / size_xy, 1.0 * 512 / size_xy)
    check_ranges(slices=slices, spacing_xy=spacing_xy, spacing_z=spacing_z)
    n = int(rng.integers(slices[0], slices[1] + 1))
    sxy = float(rng.uniform(*spacing_xy))
    hi_z = max(spacing_z[0], min(spacing_z[1], max_extent_z / n))
    sz = float(rng.uniform(spacing_z[0], hi_z))
    return n, sxy, sz
