"""The segmentation task's conventions, as FLARE 2021 defines them: the organs' label ids and names, and the name
of a CT image (``<case>_0000.nii.gz``: one modality). Defined here once for evaluation/, which imports nothing from
inference/ (inference/task.py holds the same values for inference/ and training/)."""

from __future__ import annotations

ORGANS: dict[int, str] = {1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
"""Label id -> organ name; 0 is the background."""
IMAGE_SUFFIX = "_0000.nii.gz"
"""A CT image is ``<case>_0000.nii.gz``; its label map ``<case>.nii.gz``."""
