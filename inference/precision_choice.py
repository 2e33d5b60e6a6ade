"""--precision auto on the CPU: the faster of float32 and bfloat16 for the backend, measured on this machine.

CPU flags do not say which precision is faster (a CPU may list avx512_bf16 and still run a network slower in
bfloat16, depending on the engine and the layer sizes), so the choice is timed: on the first window the engine
runs, each candidate runs once to warm up, then twice more, interleaved; the faster by best time wins, with
bfloat16 taken only when it beats float32 by more than ``MARGIN`` (float32 is exact, so ties go to it). The result is
remembered in ``precision.json`` of the user cache folder, per backend and library version, CPU model, thread count,
network widths and window shape, so a machine measures once; without a writable cache it is measured once per
process. The file is a sealed document (:mod:`inference.cache_seal`): one that is not (corrupt, edited by hand, a
FIFO, another format) or an entry that is not a valid choice is ignored with one warning line, and measured again.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from inference.cache_seal import SealError, open_document, read_regular, sealed_document

MARGIN = 0.05  # bfloat16 must be more than 5% faster than float32 to be chosen
CACHE_FILE = "precision.json"
MAX_FILE_BYTES = 1 << 20  # a file of choices is a few hundred bytes per machine and network
_MEMO: dict[str, str] = {}  # this process's choices, for when the cache folder is not writable

Timer = Callable[[Callable[[], object]], float]


def _wall_seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def choice_key(engine: str, threads: int, widths: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """The cache key of one choice: engine (backend and version), CPU model, threads, widths, window shape."""
    return f"{engine}|{cpu_model()}|{threads} threads|widths {list(widths)}|window {list(shape)}"


def measure(candidates: Mapping[str, Callable[[], object]], rounds: int = 2, timer: Timer = _wall_seconds) -> dict:
    """Best seconds of each candidate: one warm-up call each, then ``rounds`` interleaved timed calls."""
    for fn in candidates.values():
        fn()
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            best[name] = min(best[name], timer(fn))
    return best


def pick(seconds: Mapping[str, float], margin: float = MARGIN) -> str:
    """ "float32" unless bfloat16 is faster than it by more than ``margin`` (a fraction of float32's time)."""
    if "bfloat16" in seconds and seconds["bfloat16"] < (1.0 - margin) * seconds["float32"]:
        return "bfloat16"
    return "float32"


def _read(path: Path, warn: Callable[[str], None] | None = None) -> dict:
    """The choices stored in ``path``: {} when there is no file, or (with one line to ``warn``) when it is not a
    sealed document of at most MAX_FILE_BYTES."""
    if not (path.exists() or path.is_symlink()):
        return {}
    try:
        return open_document(read_regular(path, MAX_FILE_BYTES))
    except SealError as exc:
        if warn is not None:
            warn(f"warning: {path}: the precision choices stored there are not used ({exc}); measuring again")
        return {}


def _valid_entry(entry: object) -> bool:
    """A stored choice as :func:`choose` writes it: float32 or bfloat16, with finite positive seconds."""
    if not isinstance(entry, dict) or entry.get("choice") not in ("float32", "bfloat16"):
        return False
    seconds = entry.get("seconds")
    return isinstance(seconds, dict) and all(
        isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in seconds.values()
    )


def _write(path: Path, key: str, entry: dict) -> bool:
    """Add ``entry`` under ``key`` to the sealed file (written aside and renamed; a file that is not a sealed
    document is replaced); False when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read(path)
        data[key] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(sealed_document(data))
        tmp.replace(path)
        return True
    except (OSError, ValueError):  # ValueError: seconds that JSON cannot hold (NaN)
        return False


def choose(
    candidates: Mapping[str, Callable[[], object]], key: str, cache: Path | None, log: Callable[[str], None]
) -> str:
    """The name of the precision to run ("float32" or "bfloat16"): the cached or memoized choice for ``key``, else
    measured on ``candidates`` (name -> a call running the first window at that precision; "float32" must be one)
    and remembered. ``log`` gets one line."""
    path = cache / CACHE_FILE if cache is not None else None
    name = _MEMO.get(key)
    if name is None and path is not None:
        entry = _read(path, warn=log).get(key)
        if entry is not None and not _valid_entry(entry):
            log(f"warning: {path}: the precision choice stored for this network is not valid; measuring again")
        elif entry is not None and entry["choice"] in candidates:
            name = entry["choice"]
            log(f"precision auto: {name} (measured earlier on this machine, {path})")
    if name is None:
        if len(candidates) == 1:
            name = next(iter(candidates))
            log(f"precision auto: {name} (bfloat16 is not computed natively here)")
        else:
            seconds = measure(candidates)
            name = pick(seconds)
            stored = path is not None and _write(path, key, {"choice": name, "seconds": seconds})
            times = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
            log(f"precision auto: {name} (first window: {times}{'; remembered in ' + str(path) if stored else ''})")
    _MEMO[key] = name
    return name
