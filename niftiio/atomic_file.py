"""Writing a file so that a reader never sees half of it: through a temporary file in the same folder, then a rename.
Used by the generators of training data (phantom/, training.phase_split) with SimpleITK's writer."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from niftiio.file_mode import apply_umask


def write_atomic(path: Path, write: Callable[[str], None], suffix: str = ".nii.gz") -> None:
    """Create ``path`` whole or not at all: ``write(tmp)`` fills a temporary file (a name in ``path``'s folder that
    ends in ``suffix``, so that a writer picks the format from it), which is then renamed to ``path``. The folder
    is created when missing; the temporary file is removed whatever happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        apply_umask(tmp)  # mkstemp's 0600 would stay: the file gets what open() gives (0644 under umask 0022)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
