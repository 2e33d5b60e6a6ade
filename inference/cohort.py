"""A cohort in several processes: which cases this process segments, and which it can skip. docs/cohorts.md
describes the behaviour for users; in short:

- **Parts** (``--part K --num-parts N``, or ``RUNET_PART`` / ``RUNET_NUM_PARTS``): the sorted case list is dealt
  round-robin, case k (0-based, in sorted order) to part k mod N, so every case lies in exactly one part whatever
  order or timing the parts run in.
- **torchrun** (inference/distributed.py reads its variables): each process takes part RANK of WORLD_SIZE of its
  ``--part``; the records of every rank are gathered at the end (inference.runner).
- **Resuming** (``--skip-existing``): a case whose label map exists and passes the full-read check of
  :func:`inference.ct_io.written_file_problem` is not recomputed; a missing, truncated or corrupt one is.

The per-case records, the --log-csv file and the closing summary are inference/case_log.py's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from inference.case_log import CaseRecord
from inference.ct_io import NIFTI_UINT8, OUTPUT_SUFFIX, case_name, written_file_problem
from inference.distributed import Launch, env_int, launch_from_env
from niftiio.nifti_file import header_problem, read_header

T = TypeVar("T")


def select_part(cases: Sequence[T], part: int, parts: int) -> list[T]:
    """Part ``part`` (0-based) of ``parts`` of an already sorted list: the items at positions k with
    k mod parts == part. ValueError unless 0 <= part < parts."""
    if not 0 <= part < parts:
        raise ValueError(f"part must be in [0, {parts}), got {part}")
    return list(cases[part::parts])


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
    part = env_int(env, "RUNET_PART") if part is None else part
    num_parts = env_int(env, "RUNET_NUM_PARTS") if num_parts is None else num_parts
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
