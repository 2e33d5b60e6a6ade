"""RUnet checkpoints: one file with the config, the weights, the normalization, the labels and the training record.

The file is a plain dict of tensors and Python primitives, saved with torch.save and loaded with
torch.load(weights_only=True). Before loading, its sha256 is checked against the SHA256SUMS file in the same folder
(lines of `<hex digest>  <file name>`, as `sha256sum` writes them).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inference.model import RUNet, UNetConfig
from inference.preprocess import Normalization
from inference.regularized_softmax import upgrade_lambda_keys
from inference.task import ORGANS

FORMAT_VERSION = 1
DEFAULT_LABELS = {0: "background", **ORGANS}
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "runet.pt"
SUMS_FILE = "SHA256SUMS"


def default_weights() -> Path:
    """The checkpoint the CLIs load when no --weights is given: ``$RUNET_WEIGHTS``, else the shipped file."""
    return Path(os.environ.get("RUNET_WEIGHTS", DEFAULT_WEIGHTS))


# --- Sampling: how the network sees a volume -------------------------------------------------------------------

SEEN_INPLANE_MM = (2.4, 4.0)
"""In-plane voxel size (mm) of the sub-volumes the network was trained on, when the checkpoint does not say."""


@dataclass(frozen=True)
class Sampling:
    """How the network was trained to see CT, which inference reproduces (inference.engine.Segmenter.plan_for).

    inplane_voxel_mm: (lo, hi), the in-plane voxel size in mm of the strided sub-volumes the network was trained
        on; the "auto" stride keeps a scan's strided voxel (stride x in-plane spacing) in this range.
    stride: the paper's in-plane stride: the largest stride inference splits a volume with (its divisors, 4, 2 and
        1, are the others), and the one whose stride**2 phases --phases counts.
    window: depth, in slices, of the z-windows inference runs the network on.
    train_stride: the in-plane stride training cut its patches with; None when the checkpoint does not say.
    train_patch_zyx: the training patch in voxels (slices, rows, columns); None when the checkpoint does not say.
    """

    inplane_voxel_mm: tuple[float, float] = SEEN_INPLANE_MM
    stride: int = 4
    window: int = 128
    train_stride: int | None = None
    train_patch_zyx: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.inplane_voxel_mm)
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"sampling: inplane_voxel_mm must be 0 < lo <= hi (mm), got {self.inplane_voxel_mm}")
        object.__setattr__(self, "inplane_voxel_mm", (lo, hi))
        for name in ("stride", "window", "train_stride"):
            value = getattr(self, name)
            if not (value is None and name == "train_stride") and not _positive_int(value):
                raise ValueError(f"sampling: {name} must be an integer >= 1, got {value!r}")
        patch = self.train_patch_zyx
        if patch is not None:
            if len(patch) != 3 or not all(_positive_int(v) for v in patch):
                raise ValueError(f"sampling: train_patch_zyx must be 3 integers >= 1, got {patch!r}")
            object.__setattr__(self, "train_patch_zyx", tuple(int(v) for v in patch))

    def to_dict(self) -> dict:
        """Python primitives only (torch.load(weights_only=True) reads them back)."""
        patch = self.train_patch_zyx
        return {
            "inplane_voxel_mm": [float(v) for v in self.inplane_voxel_mm],
            "stride": int(self.stride),
            "window": int(self.window),
            "train_stride": None if self.train_stride is None else int(self.train_stride),
            "train_patch_zyx": None if patch is None else [int(v) for v in patch],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Sampling:
        """The inverse of :meth:`to_dict`; KeyError, TypeError or ValueError for a malformed entry."""
        if not isinstance(d, dict):
            raise TypeError(f"entry 'sampling' is of type {type(d).__name__}, not dict")
        patch = d["train_patch_zyx"]
        return cls(
            inplane_voxel_mm=tuple(d["inplane_voxel_mm"]),
            stride=d["stride"],
            window=d["window"],
            train_stride=d["train_stride"],
            train_patch_zyx=None if patch is None else tuple(patch),
        )

    @classmethod
    def of_training_record(cls, training: dict) -> Sampling:
        """The Sampling of a checkpoint written before checkpoints stored one, from its training record: the voxel
        range it recorded as "inplane_voxel_mm" (SEEN_INPLANE_MM when none), its train_config's stride and patch
        (None when absent), the paper's stride 4 and 128-slice windows."""
        train_config = training.get("train_config") or {}
        patch = train_config.get("patch")
        return cls(
            inplane_voxel_mm=tuple(training.get("inplane_voxel_mm", SEEN_INPLANE_MM)),
            train_stride=train_config.get("stride"),
            train_patch_zyx=None if patch is None else tuple(patch),
        )

    @classmethod
    def of_payload(cls, payload: dict) -> Sampling:
        """The Sampling of a loaded checkpoint payload: its "sampling" entry, or for a checkpoint written before
        there was one (the shipped weights/runet.pt), the one its training record implies."""
        if "sampling" in payload:
            return cls.from_dict(payload["sampling"])
        return cls.of_training_record(payload.get("training", {}))


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class CheckpointError(Exception):
    """The checkpoint is missing, fails its checksum, or is not a RUnet checkpoint."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode, on CPU) and what inference needs to use it."""

    model: RUNet
    config: UNetConfig
    normalization: Normalization
    label_names: dict[int, str]
    training: dict = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)


def sha256_of(path: Path) -> str:
    """Hex sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sha256sums(folder: Path) -> Path:
    """(Re)write folder/SHA256SUMS for every *.pt file in the folder; returns its path."""
    folder = Path(folder)
    lines = [f"{sha256_of(p)}  {p.name}\n" for p in sorted(folder.glob("*.pt"))]
    out = folder / SUMS_FILE
    out.write_text("".join(lines))
    return out


def verify_sha256(path: Path) -> None:
    """Check ``path`` against the SHA256SUMS beside it; CheckpointError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    sums = path.parent / SUMS_FILE
    if not sums.is_file():
        raise CheckpointError(f"{path}: no {SUMS_FILE} beside the checkpoint to verify it against")
    try:
        text = sums.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{sums}: not a {SUMS_FILE} file (byte {exc.start} is not text)") from None
    except OSError as exc:
        raise CheckpointError(f"{sums}: cannot read ({exc.strerror or exc})") from None
    expected = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            expected = parts[0].lower()
    if expected is None:
        raise CheckpointError(f"{path}: not listed in {sums}")
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    if actual != expected:
        raise CheckpointError(f"{path}: sha256 {actual} does not match {expected} in {sums}")


def save_checkpoint(
    path: Path,
    model: RUNet,
    normalization: Normalization,
    label_names: dict[int, str] | None = None,
    training: dict | None = None,
    sampling: Sampling | None = None,
) -> None:
    """Save model weights (as float32 on CPU) with everything needed to rebuild and use the network; ``sampling``
    None: the one ``training`` implies (:meth:`Sampling.of_training_record`)."""
    state = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "normalization": normalization.to_dict(),
        "label_names": {int(k): str(v) for k, v in (label_names or DEFAULT_LABELS).items()},
        "training": dict(training or {}),
        "sampling": (sampling or Sampling.of_training_record(training or {})).to_dict(),
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path = DEFAULT_WEIGHTS, verify: bool = True) -> Checkpoint:
    """Verify (sha256) and load a checkpoint; the model comes back in eval mode on the CPU. CheckpointError naming
    the file when it is missing, fails its checksum, is malformed, or holds a NaN or Inf weight or HU window value
    (a checksum only proves the file is the one written, not that training had not diverged)."""
    path = Path(path)
    if verify:
        verify_sha256(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a RUnet checkpoint of format version {FORMAT_VERSION}")
    try:
        checkpoint = _checkpoint_of(payload)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        what = f"no {exc} entry" if isinstance(exc, KeyError) else (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: malformed RUnet checkpoint ({what[:200]})") from None
    problem = non_finite_weight(checkpoint.model.state_dict())
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}; refused (a diverged training run saves such weights)")
    return checkpoint


def non_finite_weight(state: Mapping[str, torch.Tensor]) -> str | None:
    """The first floating-point tensor of ``state`` (in its order) that holds NaN or Inf, in words; None when every
    value is finite. (The normalization's HU window is checked by :class:`Normalization` itself.)"""
    for name, tensor in state.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return f"weight {name} holds {bad:,} NaN or Inf value(s) of {tensor.numel():,}"
    return None


def _checkpoint_of(payload: dict) -> Checkpoint:
    """Build the checkpoint from a loaded payload; KeyError, TypeError, AttributeError or ValueError when an entry
    is missing or of the wrong kind. The network is first built on the meta device (no memory) and its weights'
    shapes compared with the payload's, so a config that does not fit them (huge widths) fails at once."""
    for key, kind in (("config", dict), ("state_dict", dict), ("normalization", dict), ("label_names", dict)):
        if not isinstance(payload[key], kind):
            raise TypeError(f"entry {key!r} is of type {type(payload[key]).__name__}, not {kind.__name__}")
    config = UNetConfig.from_dict(payload["config"])
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in RUNet(config).state_dict().items()}
    state = upgrade_lambda_keys(payload["state_dict"])
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if got != expected:
        wrong = sorted(set(expected) ^ set(got)) or sorted(k for k in expected if expected[k] != got[k])
        raise ValueError(f"weights do not fit the saved config (first difference: {wrong[0]})")
    model = RUNet(config)
    model.load_state_dict(state)
    model.eval()
    return Checkpoint(
        model=model,
        config=config,
        normalization=Normalization.from_dict(payload["normalization"]),
        label_names={int(k): str(v) for k, v in payload["label_names"].items()},
        training=dict(payload.get("training", {})),
        sampling=Sampling.of_payload(payload),
    )


# Training state: a training run's last.pt is an inference checkpoint whose training record also holds what a
# resumed run needs ("resume": the optimizer's and the gradient scaler's state, torch's CPU RNG state).


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
