"""Turn a class map into a CT-like image: per-class HU, texture, partial-volume blur, correlated noise.

Works on canonical slabs (numpy zyx, float32 HU) so that large volumes never need more than a few slabs in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from phantom.grid import CanonicalGrid, SmoothField


@dataclass
class ImagingParams:
    """Per-case imaging parameters.

    mean, tex_fine, tex_coarse: float32 (n_classes,) HU tables indexed by class id. blur_mm: Gaussian sigma of the
    scanner's point spread in-plane (mm); blur_z_vox: sigma along z in slices; noise_hu: std of the final noise
    (correlated by the same blur); seed: of the per-slice noise; sharpen: gain of an in-plane unsharp mask applied
    after the blur (a sharp kernel's overshoot at edges and grainier noise).
    """

    mean: np.ndarray
    tex_fine: np.ndarray
    tex_coarse: np.ndarray
    blur_mm: float
    blur_z_vox: float
    noise_hu: float
    seed: int
    sharpen: float = 0.0  # edge enhancement of a sharp reconstruction kernel (0: none)


def draw_imaging(rng: np.random.Generator, mean, tex_fine, tex_coarse, spacing_z: float) -> ImagingParams:
    """Random scanner parameters: blur 0.4-0.9 mm in-plane, noise 10-25 HU, z blur by slice spacing."""
    return ImagingParams(
        mean=np.asarray(mean, np.float32),
        tex_fine=np.asarray(tex_fine, np.float32),
        tex_coarse=np.asarray(tex_coarse, np.float32),
        blur_mm=float(rng.uniform(0.4, 0.9)),
        blur_z_vox=float(np.clip(rng.uniform(0.3, 0.6) * max(1.0, 2.0 / spacing_z), 0.3, 0.8)),
        noise_hu=float(rng.uniform(10, 25)),
        seed=int(rng.integers(2**31)),
    )


KERNELS = ("smooth", "standard", "sharp")


def draw_imaging_v3(rng: np.random.Generator, mean, tex_fine, tex_coarse, spacing_z: float) -> ImagingParams:
    """Version 3's scanner: a smooth, standard or sharp kernel (blur, edge gain, noise), slice thickness 0.6-5 mm.

    The thickness is drawn between 0.8 and 1.6 slice spacings (within 0.6-5 mm); its Gaussian equivalent (FWHM =
    thickness) sets the blur along z.
    """
    kernel = KERNELS[int(rng.integers(3))]
    blur, gain, noise = {
        "smooth": ((1.0, 1.4), (0.0, 0.0), (5, 15)),
        "standard": ((0.6, 1.0), (0.0, 0.0), (10, 25)),
        "sharp": ((0.3, 0.6), (0.3, 0.8), (12, 30)),
    }[kernel]
    lo, hi = max(0.6, 0.8 * spacing_z), min(5.0, 1.6 * spacing_z)
    thickness = float(rng.uniform(lo, max(lo, hi)))
    return ImagingParams(
        mean=np.asarray(mean, np.float32),
        tex_fine=np.asarray(tex_fine, np.float32),
        tex_coarse=np.asarray(tex_coarse, np.float32),
        blur_mm=float(rng.uniform(*blur)),
        blur_z_vox=float(max(0.3, thickness / (2.355 * spacing_z))),
        noise_hu=float(rng.uniform(*noise)),
        seed=int(rng.integers(2**31)),
        sharpen=float(rng.uniform(*gain)),
    )


class TextureFields:
    """The two smooth texture fields (fine ~5 mm, coarse ~25 mm lattice) of one case."""

    def __init__(self, rng: np.random.Generator, grid: CanonicalGrid):
        fine_mm = max(5.0, 2.5 * max(grid.spacing_xyz[:2]))
        self.fine = SmoothField(rng, grid, fine_mm)
        self.coarse = SmoothField(rng, grid, 25.0)


HALO = 3  # slices computed on each side of a slab so that blurring along z matches the whole-volume result
SLAB = 16  # canonical slices rasterized at a time


def slab_ranges(n: int) -> Iterator[tuple[int, int, int, int]]:
    """(k0, k1, a0, a1) for each slab of a volume of n slices: slices k0..k1-1 are written, a0..a1-1 (HALO more on
    each side, where they exist) are computed."""
    for k0 in range(0, n, SLAB):
        k1 = min(n, k0 + SLAB)
        yield k0, k1, max(0, k0 - HALO), min(n, k1 + HALO)


def render_into(
    image: np.ndarray,
    label: np.ndarray,
    lut: np.ndarray,
    classes: np.ndarray,
    ranges: tuple[int, int, int, int],
    texture: tuple[np.ndarray, np.ndarray],
    params: ImagingParams,
    spacing_xyz,
) -> None:
    """Render the class slab `classes` (zyx, slices a0..a1-1 of `ranges`) and write slices k0..k1-1 of the int16
    HU `image` and of the uint8 `label` (lut[class]); texture: the (fine, coarse) fields on the same slab."""
    k0, k1, a0, _ = ranges
    hu = render_slab(classes, texture[0], texture[1], a0, params, spacing_xyz)
    image[k0:k1] = to_int16(hu[k0 - a0 : k1 - a0])
    label[k0:k1] = lut[classes[k0 - a0 : k1 - a0]]


def render_slab(
    classes: np.ndarray, fine: np.ndarray, coarse: np.ndarray, k0: int, params: ImagingParams, spacing_xyz
) -> np.ndarray:
    """HU (float32, same zyx shape) of a class slab whose first slice is global slice `k0`.

    classes: integer class ids (zyx); fine, coarse: texture fields on the same slab. The caller passes HALO extra slices
    each side (where they exist) and crops them afterwards.
    """
    hu = params.mean[classes]
    hu += params.tex_fine[classes] * fine
    hu += params.tex_coarse[classes] * coarse
    ny, nx = classes.shape[1:]
    # white noise, scaled so that after the point-spread blur below its std is params.noise_hu
    sig = (
        params.blur_z_vox,
        max(params.blur_mm / spacing_xyz[1], 0.5),
        max(params.blur_mm / spacing_xyz[0], 0.5),
    )
    gain = np.float32(params.noise_hu / _blurred_noise_std(sig))
    for i in range(classes.shape[0]):
        rng = np.random.default_rng((params.seed, k0 + i))
        hu[i] += rng.standard_normal((ny, nx), dtype=np.float32) * gain
    out = gaussian_filter(hu, sig, mode="nearest", truncate=3.0)
    if params.sharpen > 0:
        out += np.float32(params.sharpen) * (out - gaussian_filter(out, (0, 1.0, 1.0), mode="nearest", truncate=3.0))
    return out


def _blurred_noise_std(sigmas) -> float:
    """Std of unit white noise after a separable Gaussian blur (sigmas in voxels, truncate 3)."""
    out = 1.0
    for s in sigmas:
        delta = np.zeros(2 * int(3 * s + 0.5) + 3)
        delta[len(delta) // 2] = 1.0
        out *= float(np.sqrt((gaussian_filter1d(delta, s, truncate=3.0) ** 2).sum()))
    return out


def to_int16(hu: np.ndarray) -> np.ndarray:
    """Round and clip HU to int16 in [-1024, 3071] (the CT range)."""
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
