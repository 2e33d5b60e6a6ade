"""The user cache's OpenVINO entries and checkpoint records, read and written without torch.

An entry is a folder of ``<cache>/openvino`` holding a converted network (model.xml and model.bin), named by the
sha256 of the network's config and weights, the OpenVINO version and :data:`CONVERSION_VERSION`
(inference/openvino_conversion.py makes it), and sealed with the sha256 of its own files and its name
(:mod:`inference.cache_seal`): it is read back only when the seal holds. Beside the entries,
``openvino-checkpoints/`` holds one sealed record per verified checkpoint file (by its sha256, the OpenVINO version
and the conversion version): the entry its network converts to and the checkpoint's metadata
(:func:`inference.checkpoint.checkpoint_metadata`), which :func:`recall_checkpoint` reads instead of the weights.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

from inference.cache_seal import SealError, open_document, read_regular, read_sealed, seal, sealed_document
from inference.checkpoint import Checkpoint, checkpoint_metadata, checkpoint_of_metadata
from niftiio.atomic_file import write_atomic

CHECKPOINTS = "openvino-checkpoints"  # the cache's folder of checkpoint records, beside openvino/
ENTRIES = "openvino"  # the cache's folder of converted networks, one entry each
CONVERSION_VERSION = 2  # part of the cache key: bump when the traced graph changes (2: lambda* bound, Pad shifts)
"""Part of the key of every entry and checkpoint record. Bump it when the traced graph changes, and also when the
network handed to the conversion changes for the same checkpoint file (batch-norm folding, the plain-softmax
bound): a checkpoint record points at its entry by this number, not by the folded network's digest."""


def ov_version(ov: ModuleType) -> str:
    """OpenVINO's release (``2025.3.0`` of ``2025.3.0-19807-...``): what the cache keys and the engine report."""
    return ov.get_version().split("-")[0]


def _key(sha256: str, ov: ModuleType) -> str:
    """The name under which a network (by its digest) or a checkpoint file (by its sha256) is kept."""
    return f"{sha256}-ov{ov_version(ov)}-c{CONVERSION_VERSION}"


def entry_folder(cache: Path, digest: str, ov: ModuleType) -> Path:
    """The cache entry of the network whose config and weights hash to ``digest``."""
    return cache / ENTRIES / _key(digest, ov)


def _record_path(cache: Path, sha256: str, ov: ModuleType) -> Path:
    return cache / CHECKPOINTS / f"{_key(sha256, ov)}.json"


def remember_checkpoint(checkpoint: Checkpoint, entry: Path, ov: ModuleType) -> None:
    """Record that the verified checkpoint file of ``checkpoint.sha256`` converts to the cache entry ``entry`` (a
    folder of ``<cache>/openvino``), with its metadata; nothing when the record cannot be written."""
    path = _record_path(entry.parent.parent, checkpoint.sha256, ov)
    text = sealed_document({"entry": entry.name, "checkpoint": checkpoint_metadata(checkpoint)})
    with contextlib.suppress(OSError):
        write_atomic(path, lambda tmp: Path(tmp).write_text(text), suffix=".json")


def recall_checkpoint(cache: Path | None, sha256: str, ov: ModuleType) -> tuple[Checkpoint, object, Path] | None:
    """(the checkpoint without its weights, its converted model, the entry it came from) of the checkpoint file of
    ``sha256`` as :func:`remember_checkpoint` recorded it; None when there is no cache or no record, or the record
    or its entry does not hold (the caller then loads and converts as usual, which repairs the entry)."""
    if cache is None:
        return None
    try:
        content = open_document(read_regular(_record_path(cache, sha256, ov), max_bytes=1 << 20))
        name = content["entry"]
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            return None
        folder = cache / ENTRIES / name
        checkpoint = checkpoint_of_metadata(content["checkpoint"])
        model = read_entry(folder, ov)
    except (SealError, KeyError, TypeError, ValueError):
        return None
    checkpoint.sha256 = sha256
    return checkpoint, model, folder


def read_entry(folder: Path, ov: ModuleType) -> object:
    """The model of a sealed cache entry, read from the very bytes its seal was checked on; SealError when the
    seal does not hold or OpenVINO cannot read them."""
    files = read_sealed(folder, folder.name)
    if set(files) != {"model.xml", "model.bin"}:
        raise SealError(f"holds {sorted(files)}, not model.xml and model.bin")
    try:
        weights = ov.Tensor(np.frombuffer(files["model.bin"], dtype=np.uint8), shared_memory=False)  # a copy
        return ov.Core().read_model(model=files["model.xml"].decode(), weights=weights)
    except (RuntimeError, ValueError) as exc:  # OpenVINO raises RuntimeError; not UTF-8 is a ValueError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise SealError(f"OpenVINO cannot read it: {first[:200]}") from None


def discard_entry(folder: Path) -> None:
    """Remove a cache entry (a folder, or whatever else lies under its name), as far as it can be removed."""
    if folder.is_symlink() or not folder.is_dir():
        with contextlib.suppress(OSError):
            folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)


def store_entry(model: object, ov: ModuleType, folder: Path) -> bool:
    """Save ``model`` as folder/model.{xml,bin} (float32 weights) with its seal, written aside and renamed; False
    when it cannot be written (the cache is then skipped)."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        seal(tmp, folder.name)
        if folder.exists() or folder.is_symlink():
            discard_entry(folder)
        tmp.rename(folder)
        return True
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        return False
