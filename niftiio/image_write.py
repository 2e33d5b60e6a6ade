"""Writing an image so that a reader never sees half a file: through a temporary file in the same folder, then a
rename. Used by the generators of training data (phantom/, training.phase_split)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import SimpleITK as sitk


def write_image_atomic(image: sitk.Image, path: Path) -> None:
    """Write `image` to `path` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".nii.gz", dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
