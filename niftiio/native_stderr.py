"""What C and C++ libraries (ITK, niftilib) print on file descriptor 2, captured so that it becomes part of the
program's own one-line messages instead of stray lines around them.

Python's sys.stderr writes to the same descriptor, so a capture holds :data:`STDERR_LOCK` and every line the program
writes itself goes through :func:`write_line`, which takes the same lock (a reentrant one: a signal handler that
runs inside a capture of its own thread writes to the saved descriptor instead).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

STDERR_LOCK = threading.RLock()
_saved_fd: int | None = None  # the real stderr while a capture is active


@dataclass
class Captured:
    """The text captured by :func:`captured_stderr`, filled in when the block ends."""

    text: str = ""
    lines: list[str] = field(default_factory=list)

    def summary(self, limit: int = 300) -> str:
        """The meaningful lines joined into one: ITK's 'WARNING: In <file>, line N' location lines and blank
        lines dropped, niftilib's '** ' prefix and object addresses removed."""
        keep = [re.sub(r" ?\(0x[0-9a-f]+\)", "", ln).strip().removeprefix("** ").strip() for ln in self.lines]
        keep = [ln for ln in keep if ln and not (ln.startswith("WARNING: In ") and ", line " in ln)]
        return "; ".join(keep)[:limit]


def _sink() -> int:
    """A descriptor to capture into: an anonymous memory file, or a temporary file where that is missing."""
    try:
        return os.memfd_create("runet-stderr", 0)
    except (AttributeError, OSError):
        fd, name = tempfile.mkstemp(prefix="runet-stderr-")
        os.unlink(name)
        return fd


@contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Redirect file descriptor 2 for the duration of the block; the returned object holds what was written.

    If no capture file can be made, nothing is captured (the libraries' lines then go to stderr as they would).
    """
    global _saved_fd
    result = Captured()
    with STDERR_LOCK:
        if _saved_fd is not None:  # nested: the outer capture collects it
            yield result
            return
        sys.stderr.flush()
        try:
            sink = _sink()
        except OSError:
            yield result
            return
        saved = os.dup(2)
        _saved_fd = saved  # before the redirection: a signal handler's line never goes into the sink
        os.dup2(sink, 2)
        try:
            yield result
        finally:
            os.dup2(saved, 2)
            _saved_fd = None
            os.close(saved)
            os.lseek(sink, 0, os.SEEK_SET)
            chunks = list(iter(lambda: os.read(sink, 1 << 16), b""))
            os.close(sink)
            result.text = b"".join(chunks).decode("utf-8", errors="replace")
            result.lines = result.text.splitlines()


def write_line(message: str, write: Callable[[str], None] | None = None) -> None:
    """Write one line to the real stderr, waiting for a capture of another thread to end.

    ``write`` (default: print to sys.stderr) writes the line when no capture is active, for instance a progress
    library's own writer that keeps the line above its bars.
    """
    with STDERR_LOCK:
        if _saved_fd is not None:  # inside a capture of this thread (a signal handler): bypass it
            os.write(_saved_fd, (message + "\n").encode("utf-8", errors="replace"))
            return
        if write is None:
            print(message, file=sys.stderr, flush=True)
        else:
            write(message)
            sys.stderr.flush()
