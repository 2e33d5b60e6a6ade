"""RUnet checkpoints: one file with the config, the weights, the normalization, the labels and the training record.

The file is a plain dict of tensors and Python primitives, saved with torch.save and loaded with
torch.load(weights_only=True). Before loading, its sha256 is checked against the SHA256SUMS file in the same folder
(lines of `<hex digest>  <file name>`, as `sha256sum` writes them).

Importing this module does not import torch (nor the network's module): the functions that save, load or check
weights do, when called.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inference.plan import Sampling
from inference.preprocess import Normalization
from inference.task import ORGANS
from niftiio.wording import count

if TYPE_CHECKING:
    import torch

    from inference.model import RUNet, UNetConfig

FORMAT_VERSION = 1
DEFAULT_LABELS = {0: "background", **ORGANS}
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "runet.pt"
SUMS_FILE = "SHA256SUMS"


def default_weights() -> Path:
    """The checkpoint the CLIs load when no --weights is given: ``$RUNET_WEIGHTS``, else the shipped file."""
    return Path(os.environ.get("RUNET_WEIGHTS", DEFAULT_WEIGHTS))


class CheckpointError(Exception):
    """The checkpoint is missing, fails its checksum, or is not a RUnet checkpoint."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode, on CPU) and what inference needs to use it. ``model`` is None
    for a checkpoint read from its metadata alone (:func:`checkpoint_of_metadata`), whose network runs from its
    OpenVINO conversion."""

    model: RUNet | None
    config: UNetConfig
    normalization: Normalization
    label_names: dict[int, str]
    training: dict = field(default_factory=dict)
    sampling: Sampling = field(default_factory=Sampling)
    sha256: str | None = None  # of the file, as verified against its SHA256SUMS; None when not verified


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


def verify_sha256(path: Path) -> str:
    """Check ``path`` against the SHA256SUMS beside it and return its hex sha256; CheckpointError naming the file
    otherwise."""
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
    return actual


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
    import torch

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
    digest = verify_sha256(path) if verify else None
    import torch

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
    checkpoint.sha256 = digest
    return checkpoint


def non_finite_weight(state: Mapping[str, torch.Tensor]) -> str | None:
    """The first floating-point tensor of ``state`` (in its order) that holds NaN or Inf, in words; None when every
    value is finite. (The normalization's HU window is checked by :class:`Normalization` itself.)"""
    import torch

    for name, tensor in state.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                return f"weight {name} holds {count(bad, 'NaN or Inf value')} of {tensor.numel():,}"
    return None


def _checkpoint_of(payload: dict) -> Checkpoint:
    """Build the checkpoint from a loaded payload; KeyError, TypeError, AttributeError or ValueError when an entry
    is missing or of the wrong kind. The network is first built on the meta device (no memory) and its weights'
    shapes compared with the payload's, so a config that does not fit them (huge widths) fails at once."""
    import torch

    from inference.model import RUNet
    from inference.regularized_softmax import upgrade_lambda_keys

    if not isinstance(payload["state_dict"], dict):
        raise TypeError(f"entry 'state_dict' is of type {type(payload['state_dict']).__name__}, not dict")
    checkpoint = checkpoint_of_metadata(payload)
    config = checkpoint.config
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in RUNet(config).state_dict().items()}
    state = upgrade_lambda_keys(payload["state_dict"])
    got = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if got != expected:
        wrong = sorted(set(expected) ^ set(got)) or sorted(k for k in expected if expected[k] != got[k])
        raise ValueError(f"weights do not fit the saved config (first difference: {wrong[0]})")
    checkpoint.model = RUNet(config)
    checkpoint.model.load_state_dict(state)
    checkpoint.model.eval()
    checkpoint.training = dict(payload.get("training", {}))
    return checkpoint


def checkpoint_metadata(checkpoint: Checkpoint) -> dict:
    """What inference needs of a checkpoint besides its weights, as JSON: the payload's config, normalization,
    label names and sampling (:func:`checkpoint_of_metadata` reads it back; the training record is left out)."""
    return {
        "config": checkpoint.config.to_dict(),
        "normalization": checkpoint.normalization.to_dict(),
        "label_names": {str(k): v for k, v in checkpoint.label_names.items()},
        "sampling": checkpoint.sampling.to_dict(),
    }


def checkpoint_of_metadata(payload: dict) -> Checkpoint:
    """The checkpoint of a payload's entries without its weights (model None): a loaded payload, or what
    :func:`checkpoint_metadata` wrote. KeyError, TypeError or ValueError when an entry is missing or malformed."""
    from inference.model_config import UNetConfig

    for key in ("config", "normalization", "label_names"):
        if not isinstance(payload[key], dict):
            raise TypeError(f"entry {key!r} is of type {type(payload[key]).__name__}, not dict")
    return Checkpoint(
        model=None,
        config=UNetConfig.from_dict(payload["config"]),
        normalization=Normalization.from_dict(payload["normalization"]),
        label_names={int(k): str(v) for k, v in payload["label_names"].items()},
        sampling=Sampling.of_payload(payload),
    )
