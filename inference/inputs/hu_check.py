"""Whether an image's intensities can be CT in Hounsfield units (HU), and the +1024 offset.

A CT in HU holds air near -1000 HU (outside the body, in the lungs and bowel) and soft tissue near 0-100 HU.
Exports that store the raw detector values without applying RescaleIntercept (-1024) hold air near 0-24 and soft
tissue near 1024-1124, so the whole volume reads about 1000 HU too bright: the network sees no air and no fat and
segments nonsense. Three verdicts:

- :data:`HU`: nothing wrong seen (a minimum below 0);
- :data:`OFFSET`: a clear +1024 offset: no value below 0, at least :data:`MIN_AIR_FRACTION` of the voxels in
  [0, 200) (air and padding, shifted), and the median of the voxels at or above 200 (the body, shifted) in
  [900, 1200]. Such an image is **corrected**: 1024 is subtracted, with a warning that says so;
- :data:`NOT_HU`: a constant image; an image of a few small non-negative integers (at most :data:`MAX_LABELS`
  values in 0-255: a label map given as the image); no value below 0 (no air, no fat) without the offset's pattern;
  or a float image within [-10, 10] (a normalized one): a warning that the image does not look like CT; the image
  is segmented as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from inference.ct_io import CTVolume

HU, OFFSET, NOT_HU = "hu", "offset_1024", "not_hu"
OFFSET_HU = 1024
MIN_AIR_FRACTION = 0.05
BODY_MEDIAN_RANGE = (900.0, 1200.0)
MAX_LABELS = 16
"""An image of at most this many distinct values, all integers in 0-255, is taken for a label map."""
SAMPLE_STEP = (1, 4, 4)
"""Voxels counted for the fractions and the median: every slice, every 4th row and column (the minimum and maximum
count every voxel)."""


@dataclass(frozen=True)
class IntensityCheck:
    """The verdict (:data:`HU`, :data:`OFFSET` or :data:`NOT_HU`), what it rests on in words, and the value to add
    to the image to bring it to HU (-1024 for :data:`OFFSET`, else 0)."""

    verdict: str
    reason: str
    shift: int = 0


def check_intensities(image: np.ndarray) -> IntensityCheck:
    """Judge an image's intensities (any shape, any real dtype; NaN-free) as described in the module's docstring."""
    if image.size == 0:
        return IntensityCheck(HU, "empty image")
    low, high = float(image.min()), float(image.max())
    span = f"intensities {low:g} to {high:g} ({image.dtype})"
    if low == high:
        return IntensityCheck(NOT_HU, f"every voxel is {low:g} ({image.dtype}): a constant image does not look like CT")
    sample = image[tuple(slice(None, None, s) for s in SAMPLE_STEP)]
    if low >= 0 and high <= 255:
        values = np.unique(sample)
        if len(values) <= MAX_LABELS and np.array_equal(values, np.round(values)):
            return IntensityCheck(
                NOT_HU,
                f"{span}, only {len(values)} distinct values ({', '.join(f'{v:g}' for v in values)}): a label map? "
                "It does not look like CT",
            )
    if image.dtype.kind == "f" and low >= -10 and high <= 10:
        return IntensityCheck(NOT_HU, f"{span}: a normalized image, not CT in HU")
    if low < 0:
        return IntensityCheck(HU, span)
    air = float(np.count_nonzero(sample < 200)) / sample.size
    body = sample[sample >= 200]
    median = float(np.median(body)) if body.size else float("nan")
    if air >= MIN_AIR_FRACTION and BODY_MEDIAN_RANGE[0] <= median <= BODY_MEDIAN_RANGE[1]:
        return IntensityCheck(
            OFFSET,
            f"{span}, {air:.0%} of the voxels below 200 and the body's median at {median:g}: stored with +{OFFSET_HU} "
            "(the rescale intercept not applied)",
            -OFFSET_HU,
        )
    return IntensityCheck(
        NOT_HU,
        f"{span}: nothing below 0 (no air near -1000 HU, no fat), so not CT in Hounsfield units; stored without its "
        f"rescale intercept (then {low - OFFSET_HU:g} to {high - OFFSET_HU:g} HU with -{OFFSET_HU}), or not a CT?",
    )


def apply_intensity_check(volume: CTVolume, source: str) -> tuple[CTVolume, IntensityCheck]:
    """Check ``volume.image`` and return the volume to segment with the check: for :data:`OFFSET`, a copy
    shifted to HU (int16 when the values fit, else float32) with a warning saying so; for :data:`NOT_HU`, the
    volume unchanged with a warning; each warning one line naming ``source`` (a path or a series)."""
    check = check_intensities(volume.image)
    if check.verdict == HU:
        return volume, check
    if check.verdict == NOT_HU:
        return replace(volume, warnings=(*volume.warnings, f"{source}: {check.reason}")), check
    high = float(volume.image.max()) + check.shift
    dtype = np.int16 if volume.image.dtype.kind in "iu" and high <= np.iinfo(np.int16).max else np.float32
    shifted = volume.image.astype(dtype) + dtype(check.shift)
    note = f"{source}: {check.reason}; read as HU after subtracting {OFFSET_HU}"
    return replace(volume, image=shifted, warnings=(*volume.warnings, note)), check
