"""RUnet checkpoints: one file with the config, the weights, the normalization, the labels and the training record.

The file is a plain dict of tensors and Python primitives, saved with torch.save and loaded with
torch.load(weights_only=True). Before loading, its sha256 is checked against the SHA256SUMS file in the same folder
(lines of `<hex digest>  <file name>`, as `sha256sum` writes them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inference.model import RUNet, UNetConfig
from inference.preprocess import Normalization

FORMAT_VERSION = 1
DEFAULT_LABELS = {0: "background", 1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "runet.pt"
SUMS_FILE = "SHA256SUMS"


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
    expected = None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            expected = parts[0].lower()
    if expected is None:
        raise CheckpointError(f"{path}: not listed in {sums}")
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointError(f"{path}: sha256 {actual} does not match {expected} in {sums}")


def save_checkpoint(
    path: Path,
    model: RUNet,
    normalization: Normalization,
    label_names: dict[int, str] | None = None,
    training: dict | None = None,
) -> None:
    """Save model weights (as float32 on CPU) with everything needed to rebuild and use the network."""
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
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path = DEFAULT_WEIGHTS, verify: bool = True) -> Checkpoint:
    """Verify (sha256) and load a checkpoint; the model comes back in eval mode on the CPU."""
    path = Path(path)
    if verify:
        verify_sha256(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a RUnet checkpoint of format version {FORMAT_VERSION}")
    config = UNetConfig.from_dict(payload["config"])
    model = RUNet(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the saved config ({str(exc).splitlines()[0]})") from None
    model.eval()
    return Checkpoint(
        model=model,
        config=config,
        normalization=Normalization.from_dict(payload["normalization"]),
        label_names={int(k): v for k, v in payload["label_names"].items()},
        training=payload.get("training", {}),
    )
