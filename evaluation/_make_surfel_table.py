"""Regenerate the surfel triangle table of evaluation/surfels.py (a development tool, not used at run time).

Needs scikit-image (not a project dependency): ``pip install scikit-image && python -m evaluation._make_surfel_table``
prints the ``_TRIANGLES`` entries. For each 2x2x2 neighbourhood code it runs classic marching cubes (Lorensen & Cline)
at level 0.5 with the minority of the eight corners as foreground (a code and its complement bound the same surface) and
records the absolute area vector of every non-degenerate triangle in units of 1/8.
"""

from __future__ import annotations

import numpy as np


def triangles_of_code(code: int) -> list[tuple[int, int, int]]:
    """Absolute area vectors (x8, axes z, y, x) of the marching-cubes triangles of one neighbourhood code."""
    from skimage import measure  # development-only dependency

    if code in (0, 255):
        return []
    cube = np.array([(code >> (7 - i)) & 1 for i in range(8)], dtype=np.float64).reshape(2, 2, 2)
    if bin(code).count("1") > 4:
        cube = 1.0 - cube
    verts, faces, _, _ = measure.marching_cubes(cube, 0.5, method="lorensen")
    verts = verts.astype(np.float64)
    out = []
    for tri in faces:
        vec = np.cross(verts[tri[1]] - verts[tri[0]], verts[tri[2]] - verts[tri[0]]) * 4.0
        ints = tuple(int(round(abs(v))) for v in vec)
        if not np.allclose(np.abs(vec), ints):
            raise ValueError(f"code {code}: triangle vector {vec} is not a multiple of 1/8")
        if any(ints):
            out.append(ints)
    return out


def main() -> None:
    entries = [" ".join("".join(str(k) for k in tri) for tri in triangles_of_code(c)) for c in range(256)]
    for start in range(0, 256, 8):
        row = ", ".join(repr(e) for e in entries[start : start + 8])
        print(f"    {row},  # {start}-{start + 7}")


if __name__ == "__main__":
    main()
