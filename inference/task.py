"""The segmentation task's conventions, as FLARE 2021 defines them: the organs' label ids and names, and the name
of an input image (``<case>_0000.nii.gz``: one CT modality). Defined here once for inference/, training/ and
phantom/, which import them; evaluation/ keeps its own copy in evaluation/task.py (it imports nothing from
inference/). Also where the project's real CT cases and label templates lie (:func:`shared_data_dir`)."""

from __future__ import annotations

import os
from pathlib import Path

ORGANS: dict[int, str] = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
"""Label id -> organ name; 0 is the background."""
INPUT_SUFFIX = "_0000.nii.gz"
"""An input image is ``<case>_0000.nii.gz``."""


def shared_data_dir() -> Path:
    """The folder of the project's real CT cases and label templates: $RUNET_SHARED_DATA when set, else
    <repo>/../shared/data (the folder may be absent: callers check)."""
    env = os.environ.get("RUNET_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
