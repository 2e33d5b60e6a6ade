"""A cohort in several processes: parts of the case list, torchrun's ranks, resuming, a per-case CSV log.

- **Parts** (``--part K --num-parts N``, or ``RUNET_PART`` / ``RUNET_NUM_PARTS``): the sorted case list is dealt
  round-robin, case k (0-based, in sorted order) to part k mod N. Every case lies in exactly one part whatever order
  or timing the parts run in, part sizes differ by at most one, and neighbours in the sorted list (often one site or
  scanner, of like size) are spread over the parts.
- **torchrun** (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set): each process takes part RANK of WORLD_SIZE, of its
  ``--part`` when one is given too (so a batch-system task may itself run torchrun), on ``cuda:LOCAL_RANK`` (or the
  CPU without a GPU), with the network loaded once per process. At the end the per-case records of every rank are
  gathered (``torch.distributed``, gloo: a few hundred bytes per case, on the CPU whatever the device) so that
  rank 0 prints the summary of all, and every rank exits non-zero when any rank failed a case. The group is joined
  only when WORLD_SIZE > 1, with a timeout of :data:`GATHER_TIMEOUT`: a rank that finishes first waits at the
  gather for the slowest (NCCL's watchdog would abort it after its own timeout; torchrun stops every rank when one
  dies).
- **Resuming** (``--skip-existing``): a case whose label map exists and passes the full-read check of
  :func:`inference.io.written_file_problem` (a NIfTI header of the input's size and uint8, the gzip stream decoded
  to its end) is not recomputed; a missing, truncated or corrupt one is.
- **Per-case log** (``--log-csv FILE``, never in the output folder): one row per case, appended under an exclusive
  POSIX lock on the file (which NFS honours across machines, unlike O_APPEND alone) with one write of the whole row,
  so rows of parallel processes never interleave.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from inference.io import NIFTI_UINT8, OUTPUT_SUFFIX, CTVolume, case_name, written_file_problem
from inference.patching import PatchPlan
from inference.task import INPUT_SUFFIX
from niftiio.nifti_file import header_problem, read_header

T = TypeVar("T")

GATHER_TIMEOUT = timedelta(days=7)
"""How long a process waits for the others at the final gather (and at the group's start)."""

STALE_MARGIN_S = 3600.0
"""In a run of several parts, only temporary files older than the run's start by this much count as left by a
killed run: the other parts, started earlier or on other machines, may be writing theirs."""


def select_part(cases: Sequence[T], part: int, parts: int) -> list[T]:
    """Part ``part`` (0-based) of ``parts`` of an already sorted list: the items at positions k with
    k mod parts == part. ValueError unless 0 <= part < parts."""
    if not 0 <= part < parts:
        raise ValueError(f"part must be in [0, {parts}), got {part}")
    return list(cases[part::parts])


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a torchrun launch: global rank, number of processes, rank on its machine.
    A single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    """An integer environment variable; None when unset or empty; ValueError naming it otherwise."""
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def launch_from_env(env: Mapping[str, str] = os.environ) -> Launch:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK; rank 0 of 1 without WORLD_SIZE. ValueError (one line naming the
    variable) for a value that is not an integer or out of range."""
    world = _env_int(env, "WORLD_SIZE")
    if world is None:
        return Launch()
    rank, local = _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    if world < 1:
        raise ValueError(f"WORLD_SIZE={world} must be >= 1")
    if rank is None or not 0 <= rank < world:
        raise ValueError(f"RANK={env.get('RANK')!r} must be set to an integer in [0, WORLD_SIZE={world})")
    if local is not None and local < 0:
        raise ValueError(f"LOCAL_RANK={local} must be >= 0")
    return Launch(rank, world, rank if local is None else local)


@dataclass(frozen=True)
class Share:
    """The cases of this process: part ``part`` of ``parts`` of the sorted list (``--part``), then part RANK of
    WORLD_SIZE of that (torchrun)."""

    part: int = 0
    parts: int = 1
    launch: Launch = Launch()

    def select(self, cases: Sequence[T]) -> list[T]:
        return select_part(select_part(cases, self.part, self.parts), self.launch.rank, self.launch.world)

    @property
    def sharded(self) -> bool:
        """Whether other processes may write into the same output folder at the same time."""
        return self.parts > 1 or self.launch.distributed

    def describe(self) -> str:
        """'part 3 of 16', 'rank 1 of 2', 'rank 1 of 2 in part 3 of 16', or '' for a single process."""
        words = []
        if self.launch.distributed:
            words.append(f"rank {self.launch.rank} of {self.launch.world}")
        if self.parts > 1:
            words.append(f"part {self.part} of {self.parts}")
        return " in ".join(words)


def share_from_options(part: int | None, num_parts: int | None, env: Mapping[str, str] = os.environ) -> Share:
    """The share from ``--part``/``--num-parts`` (each falling back on RUNET_PART/RUNET_NUM_PARTS) and torchrun's
    variables. ValueError, one line in the options' words: only one of the two given, a negative part, a part not
    below the number of parts, a number of parts below 1, a malformed variable."""
    part = _env_int(env, "RUNET_PART") if part is None else part
    num_parts = _env_int(env, "RUNET_NUM_PARTS") if num_parts is None else num_parts
    if (part is None) != (num_parts is None):
        given, missing = ("--part", "--num-parts") if num_parts is None else ("--num-parts", "--part")
        raise ValueError(f"{given} needs {missing} (or RUNET_{missing[2:].upper().replace('-', '_')})")
    launch = launch_from_env(env)
    if part is None:
        return Share(launch=launch)
    if num_parts < 1:
        raise ValueError(f"--num-parts must be >= 1, got {num_parts}")
    if part < 0:
        raise ValueError(f"--part must be >= 0 (parts count from 0), got {part}")
    if part >= num_parts:
        raise ValueError(f"--part must be below --num-parts (parts count from 0): got part {part} of {num_parts}")
    return Share(part, num_parts, launch)


def process_device(name: str, launch: Launch) -> str:
    """The device this process runs on: under torchrun, "auto" and "cuda" become cuda:LOCAL_RANK (modulo the
    GPUs there are, so extra processes share them) when CUDA is available; "auto" is the CPU otherwise. Any
    other name (cpu, cuda:N) is kept, as is everything in a single process."""
    if not launch.distributed or name not in ("auto", "cuda") or not torch.cuda.is_available():
        return name
    return f"cuda:{launch.local_rank % torch.cuda.device_count()}"


def join_group(launch: Launch) -> None:
    """Join torchrun's process group (gloo; its address from the environment torchrun sets) when WORLD_SIZE > 1."""
    if launch.distributed and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)


def gather(value: T, launch: Launch) -> list[T]:
    """Every process's ``value`` (picklable), in rank order, on every process; [value] in a single process."""
    if not launch.distributed:
        return [value]
    out: list = [None] * launch.world
    dist.all_gather_object(out, value)
    return out


def leave_group(launch: Launch) -> None:
    if launch.distributed and dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class CaseRecord:
    """What the run did with one case. status: "written", "failed" or "existing" (--skip-existing found its label
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
        """The CSV row, in the order of :data:`CSV_COLUMNS` (empty cells for what is unknown)."""
        return [
            self.name,
            "x".join(str(s) for s in self.size_xyz) if self.size_xyz else "",
            "x".join(f"{s:g}" for s in self.spacing_xyz) if self.spacing_xyz else "",
            "" if self.stride is None else str(self.stride),
            "" if self.phases is None else str(self.phases),
            f"{self.seconds:.3f}",
            "" if self.peak_mb is None else f"{self.peak_mb:.1f}",
            self.status,
            self.error,
        ]


CSV_COLUMNS = ("case", "size_xyz", "spacing_xyz_mm", "stride", "phases", "seconds", "peak_memory_mb", "status", "error")


def csv_line(cells: Sequence[str]) -> bytes:
    """One CSV line (quoted where needed, "\\n" ended) as UTF-8 bytes."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(cells)
    return text.getvalue().encode()


def log_csv_problem(path: Path, output_dir: Path) -> str | None:
    """Why ``path`` cannot be the per-case log of a run writing to ``output_dir``, in words, or None: it lies in the
    output folder (or below it), is a folder, or is a file whose first line is not this log's header."""
    here = Path(os.path.realpath(path))
    out = Path(os.path.realpath(output_dir))
    if here.is_relative_to(out):
        return (
            f"--log-csv {path} lies in the output folder {output_dir}, which holds label maps only; "
            f"choose a file elsewhere"
        )
    if here.is_dir():
        return f"--log-csv {path} is a folder; give a file name"
    try:
        with open(here, "rb") as f:
            first = f.readline()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"--log-csv {path}: cannot read the existing file ({exc.strerror or exc})"
    if first and first != csv_line(CSV_COLUMNS):
        return (
            f"--log-csv {path} exists and is not a per-case log of this program (its first line differs); "
            f"choose another file"
        )
    return None


def append_row(path: Path, record: CaseRecord) -> None:
    """Append ``record``'s row to the CSV log at ``path`` (created with its header line when missing or empty).

    Under an exclusive lock on the file, the header (when the file is empty) and the row go in one write; a write
    cut short (a full disk) is undone, so the file holds whole lines only. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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


def peak_memory_mb(device: torch.device) -> float:
    """MB (2**20 bytes): on CUDA the most memory allocated on ``device`` since :func:`reset_peak_memory`; on the CPU
    the process's peak resident set so far (ru_maxrss, which never decreases)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def existing_output_problem(output: Path, image: Path) -> str | None:
    """Why the label map ``output`` of the input ``image`` must be computed: missing, or failing the full-read check
    against the input header's size; None when it is whole. An input whose header cannot be read is computed (the
    run then fails it with the reason)."""
    if not os.path.lexists(output):
        return "missing"
    try:
        header = read_header(image)
    except OSError:
        header = None
    if header is None or header_problem(header):
        return f"the input {image} has no readable NIfTI header to check it against"
    return written_file_problem(output, header.size_xyz, NIFTI_UINT8)


def split_existing(cases: Sequence[Path], output_dir: Path) -> tuple[list[Path], list[CaseRecord], list[str]]:
    """For --skip-existing: the cases to compute, records of those whose label map in ``output_dir`` is already whole
    (status "existing", with the input header's size and spacing), and one line for each existing label map that is
    redone, naming it and its problem."""
    todo: list[Path] = []
    done: list[CaseRecord] = []
    redo: list[str] = []
    for case in cases:
        start = time.perf_counter()
        name = case_name(case)
        output = output_dir / f"{name}{OUTPUT_SUFFIX}"
        problem = existing_output_problem(output, case)
        if problem is None:
            header = read_header(case)
            spacing = tuple(abs(s) for s in header.spacing[:3])
            done.append(CaseRecord(name, "existing", time.perf_counter() - start, header.size_xyz, spacing))
            continue
        if problem != "missing":
            redo.append(f"redoing {output}: {problem}")
        todo.append(case)
    return todo, done, redo


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

    "W of N case(s) written to OUT in S s[ by P processes][, E already there (--skip-existing)], mean M s per case",
    then "failed case(s): a, b" when some failed."""
    written = [r for r in records if r.status == "written"]
    existing = sum(r.status == "existing" for r in records)
    failed = sorted((r.name for r in records if r.status == "failed"), key=lambda n: n + INPUT_SUFFIX)  # case order
    line = f"{len(written)} of {len(records)} case(s) written to {output_dir} in {seconds:.1f} s"
    if processes > 1:
        line += f" by {processes} processes"
    if existing:
        line += f", {existing} already there (--skip-existing)"
    if written:
        line += f", mean {sum(r.seconds for r in written) / len(written):.2f} s per case"
    lines = [line]
    if failed:
        lines.append(f"failed case(s): {', '.join(failed)}")
    return lines, not failed
