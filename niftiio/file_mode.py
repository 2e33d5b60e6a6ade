"""The permissions a new file gets from the process's umask, for files written through a temporary file.

``tempfile.mkstemp`` creates files with mode 0600 whatever the umask; a file renamed into place from one keeps
it. :func:`apply_umask` gives such a file the mode ``open()`` would have given it (0644 under umask 0022).
Imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read from /proc/self/status where the system has it (no change to the process), else
    by setting it and setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Set ``path``'s permissions to ``mode`` less the umask, as a file created with ``open()`` gets them."""
    os.chmod(Path(path), mode & ~current_umask())
