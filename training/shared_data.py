"""Where the project's real CT cases and label templates live: ../shared/data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """$RUNET_SHARED_DATA when set, else <repo>/../shared/data (the folder may be absent: callers check)."""
    env = os.environ.get("RUNET_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
