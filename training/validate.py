"""Validation: the inference pipeline's strided patch inference on whole cases, scored with evaluation.metrics."""

from __future__ import annotations

import numpy as np
import torch

from evaluation.metrics import score_labels
from inference.checkpoint import DEFAULT_LABELS, Checkpoint
from inference.engine import Segmenter
from inference.model import RUNet
from inference.patching import PatchPlan
from inference.preprocess import Normalization
from inference.task import ORGANS
from training.data import CachedCase


def validation_plan(stride: int, window: int, size_multiple: int) -> PatchPlan:
    """All stride**2 phases of the training stride, z-windows of the training depth overlapping by half."""
    return PatchPlan(stride=stride, phases=stride * stride, window=window, size_multiple=size_multiple)


def segment_case(model: RUNet, normalization: Normalization, case: CachedCase, plan: PatchPlan, device) -> np.ndarray:
    """(D, H, W) uint8 labels of a cached case, by inference.engine.Segmenter (post-processing included)."""
    ckpt = Checkpoint(model=model, config=model.config, normalization=normalization, label_names=DEFAULT_LABELS)
    seg = Segmenter(ckpt, torch.device(device), plan, batch_size=2)
    return seg.segment(_AsVolume(case))


class _AsVolume:
    """The part of inference.io.CTVolume that Segmenter.segment reads."""

    def __init__(self, case: CachedCase) -> None:
        self.image = np.asarray(case.image)
        self.spacing_zyx = case.spacing_zyx


def validate(
    model: RUNet, normalization: Normalization, cases: list[CachedCase], plan: PatchPlan, device="cpu"
) -> dict[str, dict[int, tuple[float, float]]]:
    """{case name: {organ label: (DSC, NSD at 1 mm)}}; leaves the model in eval mode (the caller sets train())."""
    out = {}
    for case in cases:
        pred = segment_case(model, normalization, case, plan, device)
        out[case.name] = score_labels(np.asarray(case.label), pred, case.spacing_zyx, labels=tuple(ORGANS))
    return out


def summary_keys() -> list[str]:
    """The columns of :func:`summarize`, in order (log.csv has them on every row, NaN between validations)."""
    return [f"{m}_{n}" for n in ORGANS.values() for m in ("dsc", "nsd")] + ["dsc_mean"]


def summarize(scores: dict[str, dict[int, tuple[float, float]]]) -> dict[str, float]:
    """Mean DSC and NSD per organ over cases ({'dsc_liver': ..., 'nsd_liver': ..., 'dsc_mean': ...})."""
    row: dict[str, float] = {}
    for label, name in ORGANS.items():
        vals = [s[label] for s in scores.values() if label in s]
        row[f"dsc_{name}"] = float(np.mean([v[0] for v in vals])) if vals else float("nan")
        row[f"nsd_{name}"] = float(np.mean([v[1] for v in vals])) if vals else float("nan")
    row["dsc_mean"] = float(np.nanmean([row[f"dsc_{n}"] for n in ORGANS.values()]))
    return row
