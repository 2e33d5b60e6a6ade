"""A segmented case as SimpleITK images in the input's own orientation and geometry.

The pipeline holds a case as canonical (z, y, x) numpy arrays and a :class:`~inference.ct_io.CTVolume`; the output
writers of this package take SimpleITK images, which carry spacing, origin and direction (all xyz).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from inference.ct_io import CTVolume


def case_images(labels_canonical: np.ndarray, volume: CTVolume) -> tuple[sitk.Image, sitk.Image]:
    """(CT image, label map image), both in the input file's array order and exact geometry.

    Args:
        labels_canonical: uint8 label map (z, y, x) in canonical orientation, the shape of ``volume.image``.
        volume: the case as :func:`inference.ct_io.read_ct` read it.
    Returns:
        the CT (the voxel type it was read with, in HU) and the label map (uint8), each with the input's origin,
        spacing and direction.
    """
    if labels_canonical.shape != volume.image.shape:
        raise ValueError(f"label map of shape {labels_canonical.shape} does not match the image's {volume.image.shape}")
    images = []
    for array, dtype in ((volume.image, volume.image.dtype), (labels_canonical, np.uint8)):
        image = sitk.GetImageFromArray(np.ascontiguousarray(volume.orientation.from_canonical(array), dtype=dtype))
        volume.geometry.apply(image)
        images.append(image)
    return images[0], images[1]
