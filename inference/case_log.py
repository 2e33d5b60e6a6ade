"""What a run did with each case: the per-case record, the --log-csv file that holds one row per case, the peak
memory of a case, and the closing summary.

The per-case log (``--log-csv FILE``, never in the output folder) gets one row per case, appended under an exclusive
POSIX lock on the file (which NFS honours across machines, unlike O_APPEND alone) with one write of the whole row,
so rows of parallel processes never interleave.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import os
import resource
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.ct_io import CTVolume, file_kind
from inference.device import device_type
from inference.names import shown
from inference.plan import PatchPlan
from inference.task import INPUT_SUFFIX
from niftiio.wording import count, plural

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CaseRecord:
    """What the run did with one case. status: "written", :data:`NO_ORGAN` (written, but it holds no organ while
    the image shows a body: ``error`` holds the warning), "failed" or "existing" (--skip-existing found its label
    map whole). size_xyz (voxels) and spacing_xyz (mm) are the input's, in its file's axis order (as ITK gives
    them), None when it could not be read; stride and phases: the plan it ran with; seconds: wall time of the case
    (of the check, for "existing"); peak_mb: see :func:`peak_memory_mb`; error: the failure's line."""

    name: str
    status: str
    seconds: float
    size_xyz: tuple[int, ...] | None = None
    spacing_xyz: tuple[float, ...] | None = None
    stride: int | None = None
    phases: int | None = None
    peak_mb: float | None = None
    error: str = ""

    def row(self) -> list[str]:
        """The CSV row, in the order of :data:`CSV_COLUMNS` (empty cells for what is unknown; the name and the error
        shown as :func:`inference.names.shown` shows them, so that a row is one line)."""
        return [
            shown(self.name),
            "x".join(str(s) for s in self.size_xyz) if self.size_xyz else "",
            "x".join(f"{s:g}" for s in self.spacing_xyz) if self.spacing_xyz else "",
            "" if self.stride is None else str(self.stride),
            "" if self.phases is None else str(self.phases),
            f"{self.seconds:.3f}",
            "" if self.peak_mb is None else f"{self.peak_mb:.1f}",
            self.status,
            shown(self.error),
        ]


NO_ORGAN = "no_organ"
"""The status of a label map written without any organ although the image shows a body (:func:`no_organ_problem`)."""
WRITTEN = ("written", NO_ORGAN)
BODY_HU = -500.0
"""Voxels above this (HU) count as the body: soft tissue, fat, bone, not air or lung."""
MIN_BODY_ML = 500.0
"""A body of at least this volume (mL) above :data:`BODY_HU` should show some organ (an abdomen holds litres)."""


def no_organ_problem(image: np.ndarray, spacing_zyx: tuple[float, float, float], labels: np.ndarray) -> str | None:
    """Why a label map without any organ is suspect, in words, or None: ``labels`` (any shape, 0 background) holds
    no organ while ``image`` (HU, the same shape; voxel spacing ``spacing_zyx`` in mm) holds at least
    :data:`MIN_BODY_ML` mL above :data:`BODY_HU`."""
    if labels.any():
        return None
    body_ml = np.count_nonzero(image > BODY_HU) * float(np.prod(spacing_zyx)) / 1000.0
    if body_ml < MIN_BODY_ML:
        return None
    return (
        f"no organ found, though the image holds {body_ml:.0f} mL above {BODY_HU:g} HU (a body); the label map is "
        "all background: check that the image is an abdominal CT"
    )


CSV_COLUMNS = ("case", "size_xyz", "spacing_xyz_mm", "stride", "phases", "seconds", "peak_memory_mb", "status", "error")


def csv_line(cells: Sequence[str]) -> bytes:
    """One CSV line (quoted where needed, "\\n" ended) as UTF-8 bytes."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(cells)
    return text.getvalue().encode()


HEADER_READ_LIMIT = 1 << 16
"""Bytes read at most from an existing --log-csv file to check its header line."""


def _open_regular(path: Path, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags`` without blocking (a FIFO does not wait for a writer) and
    without following a final symbolic link (``path`` is resolved by the caller), checked to be a regular file.
    OSError otherwise (ENOTSUP, naming the kind of file, for what is not a regular file)."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.ENOTSUP, f"{file_kind(mode)}, not a regular file")
    return fd


def log_csv_problem(path: Path, output_dir: Path) -> str | None:
    """Why ``path`` cannot be the per-case log of a run writing to ``output_dir``, in words, or None: it lies in the
    output folder (or below it), is not a regular file (a folder, a device such as /dev/full, a FIFO: checked
    before opening, and opened without blocking or following a link), or is a file whose first line is not this
    log's header (at most :data:`HEADER_READ_LIMIT` bytes are read)."""
    here = Path(os.path.realpath(path))
    out = Path(os.path.realpath(output_dir))
    if here.is_relative_to(out):
        return (
            f"--log-csv {path} lies in the output folder {output_dir}, which holds label maps only; "
            f"choose a file elsewhere"
        )
    try:
        mode = os.stat(here).st_mode
        if not stat.S_ISREG(mode):
            return f"--log-csv {path} is {file_kind(mode)}, not a regular file; give a file name"
        fd = _open_regular(here, os.O_RDONLY)
        try:
            head = os.read(fd, HEADER_READ_LIMIT)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"--log-csv {path}: cannot read the existing file ({exc.strerror or exc})"
    if head and not head.startswith(csv_line(CSV_COLUMNS)):
        return (
            f"--log-csv {path} exists and is not a per-case log of this program (its first line differs); "
            f"choose another file"
        )
    return None


def append_row(path: Path, record: CaseRecord) -> None:
    """Append ``record``'s row to the CSV log at ``path`` (created with its header line when missing or empty).

    Under an exclusive lock on the file, the header (when the file is empty) and the row go in one write; a write
    cut short (a full disk) is undone, so the file holds whole lines only. Raises OSError, also when ``path`` is
    no longer a regular file (it is opened without blocking and checked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_regular(Path(os.path.realpath(path)), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # released when the descriptor closes
        size = os.fstat(fd).st_size
        data = (csv_line(CSV_COLUMNS) if size == 0 else b"") + csv_line(record.row())
        try:
            done = 0
            while done < len(data):
                done += os.write(fd, data[done:])
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def peak_memory_mb(device: str | torch.device) -> float:
    """MB (2**20 bytes): on CUDA the most memory allocated on ``device`` since :func:`reset_peak_memory`; on the CPU
    the process's peak resident set so far (ru_maxrss, which never decreases)."""
    if device_type(device) == "cuda":
        import torch  # a CUDA device: torch is loaded already

        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def reset_peak_memory(device: str | torch.device) -> None:
    if device_type(device) == "cuda":
        import torch  # a CUDA device: torch is loaded already

        torch.cuda.reset_peak_memory_stats(device)


def file_size_xyz(volume: CTVolume) -> tuple[int, ...]:
    """The input file's size (voxels, x first, as ITK gives it) of a volume read in canonical orientation."""
    canonical = volume.image.shape
    return tuple(int(canonical[k]) for k in np.argsort(volume.orientation.perm))[::-1]


def case_record(
    name: str,
    status: str,
    seconds: float,
    volume: CTVolume | None,
    plan: PatchPlan | None,
    peak_mb: float | None,
    error: str = "",
) -> CaseRecord:
    """The record of a case that ran: size and spacing from ``volume`` (None when it could not be read), stride and
    phases from ``plan`` (None when none was chosen)."""
    return CaseRecord(
        name,
        status,
        seconds,
        size_xyz=None if volume is None else file_size_xyz(volume),
        spacing_xyz=None if volume is None else tuple(float(s) for s in volume.geometry.spacing),
        stride=None if plan is None else plan.stride,
        phases=None if plan is None else plan.phases,
        peak_mb=peak_mb,
        error=error,
    )


def summary_lines(
    records: Sequence[CaseRecord], output_dir: Path, seconds: float, processes: int
) -> tuple[list[str], bool]:
    """The closing lines of a run over ``records`` (all processes'), and whether every case succeeded.

    "W of N cases written to OUT in S s[ by P processes][, E already there (--skip-existing)], mean M s per case",
    then "no organ found in: a, b" and "failed cases: c, d" when some were so ("1 case", "failed case: a" for one)."""
    written = [r for r in records if r.status in WRITTEN]
    existing = sum(r.status == "existing" for r in records)
    failed = sorted((r.name for r in records if r.status == "failed"), key=lambda n: n + INPUT_SUFFIX)  # case order
    line = f"{len(written)} of {count(len(records), 'case')} written to {output_dir} in {seconds:.1f} s"
    if processes > 1:
        line += f" by {processes} processes"
    if existing:
        line += f", {existing} already there (--skip-existing)"
    if written:
        line += f", mean {sum(r.seconds for r in written) / len(written):.2f} s per case"
    lines = [line]
    empty = [r.name for r in records if r.status == NO_ORGAN]
    if empty:
        lines.append(f"no organ found in: {', '.join(map(shown, empty))}")
    if failed:
        lines.append(f"failed {plural(len(failed), 'case')}: {', '.join(map(shown, failed))}")
    return lines, not failed
