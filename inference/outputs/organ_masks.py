"""One binary mask per organ beside the multilabel map, named as TotalSegmentator names its masks.

TotalSegmentator writes ``<organ>.nii.gz`` into a folder per case; its names for the FLARE organs are ``liver``,
``spleen`` and ``pancreas``. FLARE's label 2 holds both kidneys (TotalSegmentator splits them into
``kidney_left`` and ``kidney_right``), so its mask is ``kidney.nii.gz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.outputs.files import write_image
from inference.task import ORGANS

MASK_SUFFIX = ".nii.gz"


def organ_mask_paths(out_dir: Path, case: str) -> dict[str, Path]:
    """{organ name: out_dir/case/<organ>.nii.gz} for every organ, in label order."""
    return {name: Path(out_dir) / case / f"{name}{MASK_SUFFIX}" for name in ORGANS.values()}


def write_per_organ_masks(label: sitk.Image, out_dir: Path, case: str) -> dict[str, Path]:
    """Write a uint8 mask (1 inside the organ, 0 elsewhere) of every organ, present or not (an absent organ's mask
    is all 0, as TotalSegmentator writes it), to out_dir/case/<organ>.nii.gz, each with the label map's exact
    geometry. Returns {organ name: path}.

    Args:
        label: integer label map (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas).
    """
    labels = sitk.GetArrayViewFromImage(label)  # (z, y, x)
    paths = organ_mask_paths(out_dir, case)
    for value, name in ORGANS.items():
        mask = sitk.GetImageFromArray((labels == value).astype(np.uint8))
        mask.CopyInformation(label)
        write_image(mask, paths[name])
    return paths
