"""Training state: a training run's last.pt is an inference checkpoint (inference/checkpoint.py's format) whose
training record also holds what a resumed run needs ("resume": the optimizer's and the gradient scaler's state,
torch's CPU RNG state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from inference.checkpoint import FORMAT_VERSION, CheckpointError, save_checkpoint
from inference.model import RUNet
from inference.plan import Sampling
from inference.preprocess import Normalization


@dataclass(frozen=True)
class TrainingProgress:
    """How far a run got: the last finished epoch (from 0), optimizer steps in all, the best validation mean DSC so
    far (-inf before any) and the training seconds so far (validation excluded)."""

    epoch: int
    step: int
    best_dsc: float
    wall_s: float

    @classmethod
    def from_record(cls, training: dict) -> TrainingProgress:
        """The progress stored in a checkpoint's training record; KeyError when an entry is missing."""
        t = training
        return cls(int(t["epoch"]), int(t["step"]), float(t["best_dsc"]), float(t["wall_s"]))


def save_training_state(
    path: Path,
    model: RUNet,
    normalization: Normalization,
    training: dict,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampling: Sampling | None = None,
) -> None:
    """Save a checkpoint that inference can use and a run can resume from.

    ``training`` is the run's record; it must hold the progress (epoch, step, best_dsc, wall_s: see
    TrainingProgress; KeyError otherwise). The optimizer's and the scaler's state and torch's CPU RNG state are
    added to it as "resume". ``sampling``: as :func:`save_checkpoint`."""
    TrainingProgress.from_record(training)
    resume = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "torch_rng": torch.get_rng_state()}
    save_checkpoint(path, model, normalization, training=training | {"resume": resume}, sampling=sampling)


def load_training_state(
    path: Path, model: RUNet, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> TrainingProgress:
    """Continue a run from ``path`` (written by save_training_state): the weights, the optimizer's and the scaler's
    state are loaded into the given objects (in place) and torch's CPU RNG state is restored. Returns the progress.
    No sha256 check (a run's last.pt is rewritten every epoch). CheckpointError naming the file when it cannot be
    read or holds no training state."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a bad file
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("training"), dict):
        raise CheckpointError(f"{path}: not a RUnet checkpoint of format version {FORMAT_VERSION}")
    if "resume" not in payload["training"]:
        raise CheckpointError(f"{path}: holds no training state to resume from (not a training run's last.pt)")
    try:
        training = payload["training"]
        progress = TrainingProgress.from_record(training)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(training["resume"]["optimizer"])
        scaler.load_state_dict(training["resume"]["scaler"])
        torch.set_rng_state(training["resume"]["torch_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        what = f"no {exc} entry" if isinstance(exc, KeyError) else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: malformed training state ({what[:200]})") from None
    return progress
