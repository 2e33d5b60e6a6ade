"""Implicit shapes evaluated on slabs of deformed patient coordinates (mm), each within its own bounding box.

A `Slab` holds the deformed LPS coordinates q = p + u(p) (float32, zyx) of the voxels of a few consecutive canonical
slices. Shapes are defined in q, so the smooth displacement u deforms all of them consistently. `Slab.region` turns a
bounding box in q into numpy slices of the slab (or None when the box misses it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

Region = tuple[slice, slice, slice]


class Ellipsoid(NamedTuple):
    """An ellipsoid in patient coordinates: centre (xyz mm), semi-axes (mm) along the rows of `rows` (a 3x3
    orthonormal frame, see `frame`), or along x, y, z when rows is None. Unpacks as `ellipsoid`'s arguments."""

    centre: tuple[float, float, float] | np.ndarray
    axes: tuple[float, float, float] | np.ndarray
    rows: np.ndarray | None = None


class Tube(NamedTuple):
    """A tube round a polyline: points (M, 3) xyz mm, radii (M,) mm, linear along each segment. Unpacks as `tube`'s
    arguments."""

    points: np.ndarray
    radii: np.ndarray


class Slab:
    """Deformed coordinates of canonical slices k0..k1-1.

    xs, ys, zs: 1-D undeformed coordinates (mm) of the slab's columns, rows and slices; ux, uy, uz: displacement (mm,
    float32 zyx, the slab's shape); umax: upper bounds of |ux|, |uy|, |uz| used to pad bounding boxes.
    """

    def __init__(self, xs, ys, zs, ux, uy, uz, umax):
        self.xs, self.ys, self.zs = xs, ys, zs
        self.shape = (len(zs), len(ys), len(xs))
        self.qx = xs[None, None, :] + ux
        self.qy = ys[None, :, None] + uy
        self.qz = zs[:, None, None] + uz
        self.umax = np.asarray(umax, float) + 1.0

    def region(self, lo, hi) -> Region | None:
        """Slices covering every voxel whose q may lie in the box [lo, hi] (xyz, mm), or None."""
        out = []
        for axis, c in ((2, self.zs), (1, self.ys), (0, self.xs)):
            a = int(np.searchsorted(c, lo[axis] - self.umax[axis], side="left"))
            b = int(np.searchsorted(c, hi[axis] + self.umax[axis], side="right"))
            if b <= a:
                return None
            out.append(slice(a, b))
        return tuple(out)

    def q(self, r: Region) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.qx[r], self.qy[r], self.qz[r]


def frame(long_axis, toward) -> np.ndarray:
    """3x3 orthonormal rows (e1, e2, e3): e3 along `long_axis`, e1 as close to `toward` as possible."""
    e3 = np.asarray(long_axis, float)
    e3 = e3 / np.linalg.norm(e3)
    e1 = np.asarray(toward, float)
    e1 = e1 - e1.dot(e3) * e3
    e1 = e1 / np.linalg.norm(e1)
    return np.stack([e1, np.cross(e3, e1), e3])


def ellipsoid_box(center, axes, rows=None) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (lo, hi) xyz mm of an ellipsoid with semi-axes `axes` along `rows` (default xyz)."""
    c = np.asarray(center, float)
    a = np.asarray(axes, float)
    if rows is None:
        half = a
    else:
        half = np.sqrt(((np.asarray(rows).T * a[None, :]) ** 2).sum(axis=1))
    return c - half, c + half


def ellipsoid(slab: Slab, center, axes, rows=None):
    """(region, local coordinates d (3 arrays, mm), r2) of an ellipsoid; r2 < 1 inside; None if it misses."""
    r = slab.region(*ellipsoid_box(center, axes, rows))
    if r is None:
        return None
    qx, qy, qz = slab.q(r)
    dx, dy, dz = qx - np.float32(center[0]), qy - np.float32(center[1]), qz - np.float32(center[2])
    if rows is None:
        d = (dx, dy, dz)
    else:
        m = np.asarray(rows, np.float32)
        d = tuple(m[i, 0] * dx + m[i, 1] * dy + m[i, 2] * dz for i in range(3))
    r2 = (d[0] / np.float32(axes[0])) ** 2 + (d[1] / np.float32(axes[1])) ** 2 + (d[2] / np.float32(axes[2])) ** 2
    return r, d, r2


def tube(slab: Slab, points, radii):
    """(region, rho) of a tube around a polyline; rho = distance / local radius (< 1 inside). None if it misses.

    points: (M, 3) xyz mm; radii: (M,) mm, interpolated linearly along each segment.
    """
    p = np.asarray(points, np.float32)
    rad = np.asarray(radii, np.float32)
    lo = (p - rad[:, None]).min(axis=0)
    hi = (p + rad[:, None]).max(axis=0)
    r = slab.region(lo, hi)
    if r is None:
        return None
    shape = tuple(s.stop - s.start for s in r)
    rho = np.full(shape, np.inf, np.float32)
    for i in range(len(p) - 1):
        a, b, ra, rb = p[i], p[i + 1], rad[i], rad[i + 1]
        rm = max(ra, rb)
        sub = slab.region(np.minimum(a, b) - rm, np.maximum(a, b) + rm)
        if sub is None:
            continue
        # intersect sub with r, expressed relative to r
        rel = tuple(
            slice(max(s.start, t.start) - t.start, min(s.stop, t.stop) - t.start) for s, t in zip(sub, r, strict=True)
        )
        if any(s.stop <= s.start for s in rel):
            continue
        absr = tuple(slice(s.start + t.start, s.stop + t.start) for s, t in zip(rel, r, strict=True))
        qx, qy, qz = slab.q(absr)
        ab = b - a
        L2 = float(ab.dot(ab)) or 1e-6
        dx, dy, dz = qx - a[0], qy - a[1], qz - a[2]
        t = np.clip((dx * ab[0] + dy * ab[1] + dz * ab[2]) / np.float32(L2), 0.0, 1.0)
        ex, ey, ez = dx - t * ab[0], dy - t * ab[1], dz - t * ab[2]
        d = np.sqrt(ex * ex + ey * ey + ez * ez) / (ra + t * (rb - ra))
        np.minimum(rho[rel], d, out=rho[rel])
    return r, rho


def paint(tissue: np.ndarray, region: Region, mask: np.ndarray, tid: int, allowed: np.ndarray | None = None) -> None:
    """Set tissue[region][mask] = tid, only where `allowed` (a full-slab bool array) is true if given."""
    if allowed is not None:
        mask = mask & allowed[region]
    tissue[region][mask] = tid
