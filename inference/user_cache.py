"""The user's cache folder for what RUnet keeps between runs (converted networks, measured precision choices).

Never inside the input or output folders: ``$RUNET_CACHE_DIR`` when set (``off``, ``0``, ``none`` or empty: no
cache), else ``$XDG_CACHE_HOME/runet``, else ``~/.cache/runet``; :func:`check_cache_location` refuses a cache
folder that is, or lies inside, a folder the run reads or writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CACHE_ENV = "RUNET_CACHE_DIR"


def user_cache_dir() -> Path | None:
    """The runet cache folder (not created here), or None when ``$RUNET_CACHE_DIR`` turns the cache off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runet"


def check_cache_location(cache: Path | None, folders: Mapping[str, Path]) -> None:
    """ValueError (one line naming both paths) when the cache folder is, or lies inside, one of ``folders``
    ({role: folder}, e.g. {"input": -i, "output": -o}); nothing when it lies elsewhere or ``cache`` is None.

    Meant for a command line before its first case, with ``cache`` = :func:`user_cache_dir`: the cache writes
    ``openvino/`` and ``precision.json``, which must never land among the images a run reads or the label maps it
    writes. The command turns the ValueError into a usage error (exit 2). Paths are compared resolved (links
    followed, as far as they exist), so a link to the output folder counts as the output folder; a folder that
    lies inside the cache (an output folder under ``~/.cache/runet``) is allowed.
    """
    if cache is None:
        return
    where = Path(cache).expanduser().resolve()
    for role, folder in folders.items():
        root = Path(folder).expanduser().resolve()
        if where == root or root in where.parents:
            relation = "is" if where == root else "lies inside"
            raise ValueError(
                f"the cache folder {cache} {relation} the {role} folder {folder}; set ${CACHE_ENV} to a folder "
                f"outside it (or to off)"
            )
