"""Out-of-memory errors in one line that says so, and how much was asked for where the error tells.

What the libraries raise when an allocation fails:

- Python: MemoryError;
- torch on the CPU: RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes. ...");
- torch on CUDA: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB ...");
- OpenVINO: RuntimeError whose first line names only a source file ("Exception from
  src/inference/src/cpp/core.cpp:117:") and whose later lines hold the cause ("Failed to allocate N bytes of
  memory", "std::bad_alloc").
"""

from __future__ import annotations

import re

_CAUSE = re.compile(r"bad_alloc|out of memory|can't allocate memory|cannot allocate memory|failed to allocate", re.I)
_BYTES = re.compile(r"allocate (\d+) bytes", re.I)
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZED = re.compile(r"tried to allocate ([\d.]+) ?(B|KiB|MiB|GiB|TiB)\b", re.I)


class OutOfMemory(MemoryError):
    """A failed allocation, its message one line: "out of memory WHERE (N MB asked for; the library's cause)"."""


def asked_bytes(text: str) -> int | None:
    """The bytes an allocation error message says were asked for; None when it does not say."""
    match = _BYTES.search(text)
    if match:
        return int(match.group(1))
    match = _SIZED.search(text)
    if match:
        unit = next(u for u in _UNITS if u.lower() == match.group(2).lower())
        return round(float(match.group(1)) * _UNITS[unit])
    return None


def out_of_memory(exc: BaseException, where: str = "") -> OutOfMemory | None:
    """An :class:`OutOfMemory` for an exception that reports a failed allocation (any line of its message, or a
    MemoryError), None for any other. ``where`` (e.g. "in OpenVINO on a 1x1x128x160x160 window") follows "out of
    memory"; the size asked for comes in MB where the message gives it. An OutOfMemory comes back as it is."""
    if isinstance(exc, OutOfMemory):
        return exc
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    cause = next((ln for ln in lines if _CAUSE.search(ln)), None)
    if cause is None:
        if not isinstance(exc, MemoryError):
            return None
        cause = lines[0] if lines else ""
    details = []
    asked = asked_bytes(str(exc))
    if asked is not None:
        details.append(f"{asked / 2**20:,.1f} MB asked for")
    details.append(f"{type(exc).__name__}: {cause[:200]}" if cause else type(exc).__name__)
    return OutOfMemory(f"out of memory{' ' + where if where else ''} ({'; '.join(details)})")
