"""Writing output files whole: through a temporary file of the destination folder that this process holds
(:mod:`inference.partial_files`, as the label maps are written) and a rename, so that a file exists under its name
only when complete; permissions follow the umask (0644 under 0022)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import SimpleITK as sitk

from inference.partial_files import publish, temp_file


def _write_via_temp(path: Path, write: Callable[[str], None]) -> Path:
    """Create ``path``'s folder, call ``write(temporary name)``, then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    with temp_file(path.parent, suffix) as tmp:
        write(str(tmp))
        publish(tmp, path, record=False)
    return path


def write_image(image: sitk.Image, path: Path) -> Path:
    """Write ``image`` whole (compressed where the format allows; the format follows the file name). Raises
    OSError with one line naming the file when it cannot be written."""

    def write(tmp: str) -> None:
        try:
            sitk.WriteImage(image, tmp, useCompression=True)
        except RuntimeError as exc:
            lines = str(exc).strip().splitlines()
            raise OSError(f"{path}: cannot write the image ({lines[-1] if lines else 'write failed'})") from None

    return _write_via_temp(Path(path), write)


def write_bytes(data: bytes, path: Path) -> Path:
    """Write ``data`` whole to ``path``."""
    return _write_via_temp(Path(path), lambda tmp: Path(tmp).write_bytes(data))
