"""The segmentation task's conventions, as FLARE 2021 defines them: the organs' label ids and names, and the name
of an input image (``<case>_0000.nii.gz``: one CT modality). Defined here once for inference/ and for training/,
which imports them; evaluation/ keeps its own copy in evaluation/task.py (it imports nothing from inference/)."""

from __future__ import annotations

ORGANS: dict[int, str] = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
"""Label id -> organ name; 0 is the background."""
INPUT_SUFFIX = "_0000.nii.gz"
"""An input image is ``<case>_0000.nii.gz``."""
