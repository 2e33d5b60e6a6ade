"""The user's cache folder for what RUnet keeps between runs (converted networks, measured precision choices).

Never inside the input or output folders: ``$RUNET_CACHE_DIR`` when set (``off``, ``0``, ``none`` or empty: no
cache), else ``$XDG_CACHE_HOME/runet``, else ``~/.cache/runet``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RUNET_CACHE_DIR"


def user_cache_dir() -> Path | None:
    """The runet cache folder (not created here), or None when ``$RUNET_CACHE_DIR`` turns the cache off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "0", "off", "none") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runet"
