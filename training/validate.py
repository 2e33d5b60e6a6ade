"""Validation: the inference pipeline's strided patch inference on whole cases, scored with evaluation.metrics."""

from __future__ import annotations

import numpy as np

from evaluation.metrics import score_labels
from inference.checkpoint import DEFAULT_LABELS, Checkpoint
from inference.engine import Segmenter
from inference.engine_options import EngineOptions
from inference.model import RUNet
from inference.plan import PlanOptions, Sampling
from inference.preprocess import Normalization
from inference.task import ORGANS
from training.data import CachedCase


def validation_options(sampling: Sampling) -> PlanOptions:
    """Training's own cut: every phase of the training stride, z-windows of the training patch's depth overlapping
    by half. ValueError when ``sampling`` does not record the training stride and patch."""
    if sampling.train_stride is None or sampling.train_patch_zyx is None:
        raise ValueError(f"validation needs the training stride and patch, which {sampling} does not record")
    stride = sampling.train_stride
    return PlanOptions(phases=stride * stride, stride=stride, window=sampling.train_patch_zyx[0])


def validate(
    model: RUNet, normalization: Normalization, cases: list[CachedCase], sampling: Sampling, device="cpu"
) -> dict[str, dict[int, tuple[float, float]]]:
    """{case name: {organ label: (DSC, NSD at 1 mm)}}, each case segmented by one inference.engine.Segmenter
    (post-processing included) built for this pass with :func:`validation_options`; leaves the model in eval mode
    (the caller sets train())."""
    checkpoint = Checkpoint(model, model.config, normalization, DEFAULT_LABELS, sampling=sampling)
    engine = EngineOptions(device=str(device), precision="float32", backend="torch")
    segmenter = Segmenter.from_options(checkpoint, engine, validation_options(sampling))
    out = {}
    for case in cases:
        pred = segmenter.segment(np.asarray(case.image), case.spacing_zyx)
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
