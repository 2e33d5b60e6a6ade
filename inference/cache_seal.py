"""Seals for what the user cache keeps, so that what is read back is what was written for the same key.

Two kinds of entry:

- a folder of files (a converted network): ``SEAL.json`` inside it records the entry's key and the size and sha256
  of every other file; :func:`read_sealed` reads the files and recomputes both;
- a JSON document (the precision choices): stored as ``{"content": ..., "sha256": ...}``, the digest of the
  content's canonical JSON; :func:`open_document` recomputes it.

Any difference (a flipped byte, a truncated or extra file, another entry's files copied in, a hand-edited value) is
a :class:`SealError` whose message says what differs, and the caller discards the entry and builds it again. This
catches corruption and mix-ups, not forgery: whoever may write the cache folder may also write a matching seal.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

SEAL_FILE = "SEAL.json"
SEAL_VERSION = 1


class SealError(Exception):
    """A cache entry whose seal is missing, unreadable or does not match its files or key (message: what differs,
    without the entry's path)."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(folder: Path, key: str) -> None:
    """Write ``folder/SEAL.json`` for the regular files now in ``folder`` under ``key``; OSError when it cannot."""
    folder = Path(folder)
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _digest(p.read_bytes())} for p in sorted(folder.iterdir())}
    files.pop(SEAL_FILE, None)
    text = json.dumps({"version": SEAL_VERSION, "key": key, "files": files}, indent=1, sort_keys=True)
    (folder / SEAL_FILE).write_text(text)


def read_regular(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes (a link, a FIFO or a device is not opened, so
    nothing blocks); SealError otherwise."""
    path = Path(path)
    try:  # opened without following a link nor waiting for a FIFO's writer, then checked
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SealError(f"{path.name} is not a regular file")
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SealError(f"{path.name} is a symbolic link") from None
        raise SealError(f"cannot read {path.name} ({exc.strerror or exc})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise SealError(f"{path.name} holds more than the {max_bytes:,} bytes expected")
    return data


def read_sealed(folder: Path, key: str) -> dict[str, bytes]:
    """{file name: bytes} of a sealed folder whose seal names ``key`` and matches every file; SealError otherwise.

    The bytes returned are the ones checked, so a file changed after the check is not used unchecked."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise SealError("not a folder")
    try:
        record = json.loads(read_regular(folder / SEAL_FILE, max_bytes=1 << 20))
    except SealError as exc:
        raise SealError(f"no readable {SEAL_FILE} ({exc})") from None
    except ValueError:
        raise SealError(f"{SEAL_FILE} is not JSON") from None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or record.get("version") != SEAL_VERSION:
        raise SealError(f"{SEAL_FILE} is not a seal of version {SEAL_VERSION}")
    if record.get("key") != key:
        raise SealError(f"sealed for another entry ({str(record.get('key'))[:80]!r})")
    try:
        present = sorted(p.name for p in folder.iterdir() if p.name != SEAL_FILE)
    except OSError as exc:
        raise SealError(f"cannot list the folder ({exc.strerror or exc})") from None
    if present != sorted(files):
        raise SealError(f"holds {present}, its seal lists {sorted(files)}")
    out = {}
    for name in present:
        data = read_regular(folder / name)
        entry = files[name]
        if not isinstance(entry, dict) or (len(data), _digest(data)) != (entry.get("bytes"), entry.get("sha256")):
            raise SealError(f"{name} differs from its seal ({len(data):,} bytes, sha256 {_digest(data)[:12]}...)")
        out[name] = data
    return out


def _canonical(content: object) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sealed_document(content: dict) -> str:
    """The JSON text storing ``content`` (JSON-able, no NaN) with the sha256 of its canonical form."""
    return json.dumps({"content": content, "sha256": _digest(_canonical(content))}, indent=1, sort_keys=True)


def open_document(text: str | bytes) -> dict:
    """The content of a text written by :func:`sealed_document`; SealError when it is not JSON, not sealed, or its
    content does not match the digest (edited by hand, another format, bit rot)."""
    try:
        record = json.loads(text)
    except ValueError:
        raise SealError("not JSON") from None
    if not isinstance(record, dict) or set(record) != {"content", "sha256"} or not isinstance(record["content"], dict):
        raise SealError("not a sealed document")
    try:
        digest = _digest(_canonical(record["content"]))
    except ValueError:
        raise SealError("its content holds NaN or Inf") from None
    if digest != record["sha256"]:
        raise SealError("its content does not match its sha256")
    return record["content"]
