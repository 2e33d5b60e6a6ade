"""A SimpleITK image already in memory (a DICOM series, for one) as a :class:`~inference.ct_io.CTVolume`, with the
checks :func:`inference.ct_io.read_ct` makes of an image file after reading it."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from inference.ct_io import CTVolume, Geometry, InputError, checked_orientation
from inference.preprocess import AIR_HU, replace_non_finite

REAL_PIXEL_TYPES = {
    sitk.sitkUInt8,
    sitk.sitkInt8,
    sitk.sitkUInt16,
    sitk.sitkInt16,
    sitk.sitkUInt32,
    sitk.sitkInt32,
    sitk.sitkUInt64,
    sitk.sitkInt64,
    sitk.sitkFloat32,
    sitk.sitkFloat64,
}


def volume_from_image(image: sitk.Image, source: str) -> CTVolume:
    """Bring a 3D scalar image into canonical orientation (z, y, x) as a CTVolume.

    Args:
        image: the CT in HU; spacing, origin and direction as SimpleITK gives them (xyz, mm).
        source: what the image came from (a path, a DICOM series), for the messages.
    Raises:
        InputError: one line naming ``source``: not 3D, not scalar, complex voxels, a non-finite or non-positive
            spacing, a degenerate direction, or every voxel NaN or Inf (an oblique direction: a warning).
    """
    if image.GetDimension() != 3:
        raise InputError(f"{source}: expected a 3D image, got {image.GetDimension()}D of size {image.GetSize()}")
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetPixelID() not in REAL_PIXEL_TYPES:
        raise InputError(f"{source}: {image.GetPixelIDTypeAsString()} voxels are not supported (a scalar image)")
    spacing = image.GetSpacing()
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{source}: invalid voxel spacing {spacing} (must be finite and > 0)")
    warnings: list[str] = []
    orientation = checked_orientation(image, source, warnings)
    array = sitk.GetArrayFromImage(image)
    replaced = replace_non_finite(array) if array.dtype.kind == "f" else 0
    if replaced == array.size:
        raise InputError(f"{source}: every voxel is NaN or Inf")
    if replaced:
        warnings.append(f"{source}: {replaced} of {array.size} voxels are NaN or Inf; read as air ({AIR_HU:g} HU)")
    return CTVolume(
        image=np.ascontiguousarray(orientation.to_canonical(array)),
        spacing_zyx=orientation.spacing_zyx(spacing),
        orientation=orientation,
        geometry=Geometry.of(image),
        warnings=tuple(warnings),
    )
