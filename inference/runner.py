"""Segment CT from Python: a folder of ``<case>_0000.nii.gz`` images (:func:`segment_folder`), a list of files
(:func:`segment_cases`), or one image in memory or on disk (:func:`segment`). ``python -m inference.predict`` is
:func:`segment_folder`'s command line; README.md ("Python API") shows both.

A folder run reads the next case in a background thread while the current one is segmented (:class:`ReadAhead`),
runs every case alone (a case that fails, whatever the error, is logged and recorded, and the next one runs), shows
progress on stderr, and on SIGTERM, SIGINT or SIGHUP removes the label map being written, lists those written and
ends the process with 128 + the signal number.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from inference.case_log import (
    NO_ORGAN,
    CaseRecord,
    append_row,
    case_record,
    log_csv_problem,
    no_organ_problem,
    peak_memory_mb,
    reset_peak_memory,
    summary_lines,
)
from inference.checkpoint import CheckpointError, default_weights
from inference.cli import bar, bars_off, log
from inference.cohort import Share, share_from_options, split_existing
from inference.ct_io import (
    INPUT_SUFFIX,
    OUTPUT_SUFFIX,
    CTVolume,
    InputError,
    OutputError,
    ct_volume,
    label_image,
    write_labels,
)
from inference.device import precision_name
from inference.distributed import gather, join_group, leave_group
from inference.engine_options import EngineOptions
from inference.inputs.cases import FLARE, IMAGE_SUFFIXES, InputCase, Skipped, list_cases
from inference.inputs.checked_read import as_input_case, case_files, read_checked
from inference.inputs.hu_check import apply_intensity_check
from inference.names import name_problem, shown
from inference.out_of_memory import out_of_memory
from inference.outputs.case_extras import ExtraOutputs
from inference.partial_files import OUTPUTS, remove_abandoned_temp_files
from inference.plan import PlanOptions
from niftiio.wording import count

if TYPE_CHECKING:
    from inference.engine import Segmenter  # imported when a run starts: it loads torch

LabelsFn = Callable[[str, CTVolume, np.ndarray], None]
"""Called with (case name, the volume read, its (D, H, W) uint8 label map in canonical zyx orientation) for every
case segmented, inside the case's isolation: an exception it raises fails that case only."""


class RunError(Exception):
    """A folder run that cannot start: the message (one line) and the exit code of the command line (1, or 2 for
    a problem with what was asked)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- the folders --------------------------------------------------------------------------------------------------


def find_cases(input_dir: Path) -> tuple[list[Path], list[Path]]:
    """The sorted entries of a folder named `<case>_0000.nii.gz`, whatever they are (one that is not a readable
    regular file, such as a dangling link, a folder, a FIFO or a device, is a case that fails when read, with the
    reason), and the other entries, which are skipped. OSError when the folder cannot be listed."""
    cases, skipped = [], []
    for entry in sorted(input_dir.iterdir()):
        if entry.name.endswith(INPUT_SUFFIX) and len(entry.name) > len(INPUT_SUFFIX):
            cases.append(entry)
        else:
            skipped.append(entry)
    return cases, skipped


def skipped_lines(skipped: list[Path], verbose: bool) -> list[str]:
    """One line counting the skipped entries (with ``verbose``, one line each before it); none when none."""
    if not skipped:
        return []
    lines = [f"skipping {entry}: not an input image (<case>{INPUT_SUFFIX})" for entry in skipped] if verbose else []
    one = len(skipped) == 1
    lines.append(
        f"{len(skipped)} {'file is not a' if one else 'files are not'} <case>{INPUT_SUFFIX} "
        f"input{'' if one else 's'} and {'was' if one else 'were'} skipped"
        + ("" if verbose else f"; -v lists {'it' if one else 'them'}")
    )
    return lines


def input_skipped_lines(cases: Sequence[InputCase], skipped: Sequence[Skipped], verbose: bool) -> list[str]:
    """The lines about the skipped entries of an input: for a FLARE folder those of :func:`skipped_lines` (the
    count, as ever); for any other input a count, and with ``verbose`` one line each saying why."""
    if not skipped:
        return []
    lines = [entry.line() for entry in skipped] if verbose else []
    if cases and cases[0].kind == FLARE:
        return lines + skipped_lines([entry.path for entry in skipped], verbose)[-1:]
    one = len(skipped) == 1
    lines.append(
        f"{len(skipped)} {'entry' if one else 'entries'} of the input {'was' if one else 'were'} skipped"
        + ("" if verbose else "; -v says why")
    )
    return lines


def prepare_output(output_dir: Path) -> str | None:
    """Create the output folder and check it is writable; an error line or None."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{output_dir}: cannot create output folder ({exc.strerror or exc})"
    if not os.access(output_dir, os.W_OK | os.X_OK):
        return f"{output_dir}: output folder is not writable"
    return None


def _folder_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def overlap_problem(input_dir: Path, output_dir: Path, reads: list[Path]) -> str | None:
    """The output folder may not be the input folder, nor hold a file the run reads (``reads``: the cases, the
    checkpoint and its SHA256SUMS, links followed): label maps written there could replace them. An error line, or
    None. A folder is compared by identity (device and inode), so another path to the same folder is caught."""
    out = _folder_id(output_dir)
    if out is None:  # not there yet: it holds nothing
        return None
    if out == _folder_id(input_dir):
        return (
            f"-o {output_dir} is the input folder: label maps written there could replace the files that are read "
            f"or lie beside them (a <case>{OUTPUT_SUFFIX} ground truth, a <case>{INPUT_SUFFIX} image); "
            f"choose another output folder"
        )
    for path in reads:
        for folder in {path.parent, Path(os.path.realpath(path)).parent}:
            if _folder_id(folder) == out:
                return f"-o {output_dir} holds {path}, which this run reads; choose another output folder"
    return None


# --- reading ahead, signals, progress --------------------------------------------------------------------------------


def read_input(case: Path | InputCase) -> CTVolume:
    """One case of a run, read and checked: :func:`inference.inputs.checked_read.read_checked` (a plain path is an
    image file, a ``<case>_0000.nii.gz`` one read exactly as the FLARE folder reads it)."""
    return read_checked(as_input_case(case))


def prefetch_reads(
    cases: Sequence[Path | InputCase], pool: ThreadPoolExecutor, first: Future | None = None
) -> Iterator[Future]:
    """Futures of read_input(case), in order, each read started while the previous case is being segmented.

    ``first`` is the already-submitted read of cases[0] (a run starts it before loading the network, so that
    reading the first case overlaps the start-up); its result or exception is raised by ``Future.result()``.
    """
    pending = first if first is not None else pool.submit(read_input, cases[0])
    for k in range(len(cases)):
        current = pending
        if k + 1 < len(cases):
            pending = pool.submit(read_input, cases[k + 1])
        yield current


class ReadAhead:
    """read_input of ``cases`` in one background thread, each case read while the one before it is segmented; the
    first read starts at once (it overlaps loading the network). Iterate once for the futures, in order; close
    (or leave the ``with`` block) to stop the reads not yet started."""

    def __init__(self, cases: Sequence[Path | InputCase]) -> None:
        self.cases = list(cases)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read")
        self.first = self.pool.submit(read_input, self.cases[0]) if self.cases else None

    def __iter__(self) -> Iterator[Future]:
        return prefetch_reads(self.cases, self.pool, self.first) if self.cases else iter(())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process at once with ``code``.

    Every output file is complete and renamed by then; what is skipped is the interpreter's tear-down (freeing
    torch's modules and tensors one by one, about a second of the case's measured time on a 2-core CPU).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def interrupted_message(signum: int, output_dir: Path, total: int, written: list[Path], removed: list[Path]) -> str:
    """The line printed when a signal ends the run: what was written, and the partial file removed."""
    names = [shown(p.name.removesuffix(OUTPUT_SUFFIX)) for p in written]
    line = f"interrupted by {signal.Signals(signum).name}: {len(written)} of {count(total, 'case')} written"
    line += f" to {output_dir}"
    if names:
        line += f" ({', '.join(names)})"
    if removed:
        line += f"; removed the partial file {', '.join(str(p) for p in removed)}"
    return line


HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def install_signal_handlers(output_dir: Path, total: int) -> dict:
    """SIGTERM, SIGINT and SIGHUP: remove the temporary files being written, list what was written, exit 128 +
    signal (143, 130, 129). A signal that comes while a file is renamed and recorded acts once that is done
    (:meth:`inference.partial_files.OutputRecord.settled`), so that it finds every file recorded. Returns the
    handlers replaced (none outside the main thread, where Python cannot set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def end(signum: int) -> None:
        removed = OUTPUTS.remove_partial()
        log(interrupted_message(signum, output_dir, total, list(OUTPUTS.written), removed))
        exit_now(128 + signum)

    def handler(signum: int, frame: object) -> None:
        OUTPUTS.when_settled(lambda: end(signum))

    return {sig: signal.signal(sig, handler) for sig in HANDLED_SIGNALS}


def case_failure(path: Path, exc: BaseException) -> str:
    """One line for a case that failed: our own errors as they are, anything else with its kind; names in it shown
    as :func:`inference.names.shown` shows them (so that no name breaks the line)."""
    if isinstance(exc, (InputError, OutputError)):
        return shown(str(exc))
    memory = out_of_memory(exc)
    if memory is not None:
        return shown(f"{path}: {memory}")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return shown(f"{path}: {type(exc).__name__}: {text[:300]}")


class WindowProgress:
    """The progress callback of one case: a bar of its z-windows under the bar of cases (on a terminal only)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None or self.bar.total != total:  # the first call, or a rerun after an out-of-memory error
            self.close()
            self.bar = bar(total=total, desc=self.name, unit="window", position=1, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the per-case loop ---------------------------------------------------------------------------------------------


def _log_row(log_csv: Path | None, record: CaseRecord) -> None:
    """Append the case's row to ``log_csv``, if given; a failure to do so is a warning (the label map is there)."""
    if log_csv is None:
        return
    try:
        append_row(log_csv, record)
    except OSError as exc:
        log(f"warning: {log_csv}: cannot append the row of {record.name} ({exc.strerror or exc})")


def segment_cases(
    cases: Sequence[Path | InputCase],
    segmenter: Segmenter,
    *,
    output_dir: Path | None = None,
    on_labels: LabelsFn | None = None,
    log_csv: Path | None = None,
    verbose: bool = False,
    reads: ReadAhead | None = None,
) -> list[CaseRecord]:
    """Segment each case of ``cases`` alone, in order; one CaseRecord per case ("written", "no_organ" or "failed").

    A case is an image file's path (a ``<case>_0000.nii.gz`` one named ``<case>``, any other after the file) or an
    :class:`~inference.inputs.cases.InputCase` of :func:`inference.inputs.cases.list_cases` (a DICOM series, too);
    each is read with the HU check (:func:`read_input`).

    Each label map is written to ``output_dir``/<case>.nii.gz (when given; in the input's geometry) and handed to
    ``on_labels`` (when given, see :data:`LabelsFn`). A case that fails (unreadable, out of memory, a write that
    failed, anything raised) is logged, recorded with its reason and the next case runs. ``log_csv``: a file that
    gets each case's row (inference.case_log); ``verbose``: tracebacks of unexpected errors; ``reads``: the
    ReadAhead of ``cases`` when the caller started it (one is made otherwise).
    """
    records: list[CaseRecord] = []
    own = reads is None
    reads = ReadAhead(list(cases)) if own else reads
    try:
        for case, read in zip(bar(iterable=cases, desc="cases", unit="case", position=0), reads):
            records.append(_segment_one(as_input_case(case), read, segmenter, output_dir, on_labels, verbose))
            _log_row(log_csv, records[-1])
    finally:
        if own:
            reads.close()
    return records


def _segment_one(
    case: InputCase,
    read: Future,
    segmenter: Segmenter,
    output_dir: Path | None,
    on_labels: LabelsFn | None,
    verbose: bool,
) -> CaseRecord:
    """One case, whatever happens to it: its record, and a log line (its size, stride and time, or the failure)."""
    name, path = case.name, case.path
    start = time.perf_counter()
    reset_peak_memory(segmenter.device)
    windows = WindowProgress(name)
    volume = case_plan = None
    try:
        volume = read.result()
        for warning in volume.warnings:
            log(f"warning: {shown(warning)}")
        case_plan = segmenter.plan_for(volume.spacing_zyx)  # the plan logged and the plan run
        labels = segmenter.segment(volume.image, volume.spacing_zyx, plan=case_plan, progress=windows)
        empty = no_organ_problem(volume.image, volume.spacing_zyx, labels)
        if output_dir is not None:
            write_labels(output_dir / f"{name}{OUTPUT_SUFFIX}", labels, volume)
        if on_labels is not None:
            on_labels(name, volume, labels)
        labels = None
        status, error = ("written", "") if empty is None else (NO_ORGAN, shown(f"{path}: {empty}"))
        if empty is not None:
            log(f"warning: {error}")
    except Exception as exc:  # every case alone: MemoryError and the unexpected included
        error = case_failure(path, exc)
        log(f"failed: {error}")
        if verbose and not isinstance(exc, (InputError, OutputError)):
            log("".join(traceback.format_exception(exc)).rstrip())
        status, labels = "failed", None  # free the failed case's memory before the next
    finally:
        windows.close()
    seconds = time.perf_counter() - start
    record = case_record(name, status, seconds, volume, case_plan, peak_memory_mb(segmenter.device), error)
    if status != "failed":
        shape = "x".join(str(s) for s in reversed(volume.image.shape))
        log(f"{shown(name)}: {shape} voxels (canonical xyz), stride {case_plan.stride}, {seconds:.2f} s")
    return record


# --- a folder ------------------------------------------------------------------------------------------------------


def segment_folder(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    weights: str | Path | None = None,
    plan: PlanOptions = PlanOptions(),
    engine: EngineOptions = EngineOptions(),
    share: Share | None = None,
    skip_existing: bool = False,
    log_csv: str | Path | None = None,
    verbose: bool = False,
    extras: ExtraOutputs | None = None,
) -> list[CaseRecord]:
    """Segment every case of ``input_dir`` into ``output_dir``/<case>.nii.gz (uint8 label maps in the input's
    geometry), as ``python -m inference.predict`` does; returns the records of every case of every process (all
    "written" or "existing" when nothing failed).

    ``input_dir``: a folder or one file, as :func:`inference.inputs.cases.list_cases` takes it (a folder of
    ``<case>_0000.nii.gz`` files reads exactly those; any other folder its 3D images and DICOM series); every case
    gets the HU check. ``extras``: the outputs besides the label maps, each in its subfolder of ``output_dir``
    (:mod:`inference.outputs.case_extras`; None: none).

    weights: the checkpoint (None: inference.checkpoint.default_weights(), $RUNET_WEIGHTS or the shipped one);
    plan, engine: how volumes are cut and where the network runs; share: this process's part of the cases (None:
    from $RUNET_PART, $RUNET_NUM_PARTS and torchrun's variables); skip_existing: keep label maps that are there
    and whole; log_csv: a file (outside ``output_dir``) that gets one row per case; verbose: list skipped files,
    tracebacks of unexpected errors and why each skipped file was skipped. Progress and a closing summary (rank 0)
    go to stderr.

    RunError (with the command line's exit code) when the run cannot start: the input folder cannot be listed or
    holds no input image, the output folder is the input folder or holds a file the run reads, cannot be created
    or listed, the checkpoint or the engine options cannot be used.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    weights = default_weights() if weights is None else Path(weights)
    log_csv = None if log_csv is None else Path(log_csv)
    share = share_from_options(None, None) if share is None else share
    if log_csv is not None and (problem := log_csv_problem(log_csv, output_dir)):
        raise RunError(problem, 2)
    if share.launch.distributed:
        bars_off()  # the processes share one terminal
    cases, existing = _cases_to_run(input_dir, output_dir, weights, share, skip_existing, verbose)
    started = time.perf_counter()
    records = list(existing)
    if existing:
        log(f"--skip-existing: kept {count(len(existing), 'label map')} in {output_dir} that read whole")
    for record in existing:
        _log_row(log_csv, record)
    if cases:
        with ReadAhead(cases) as reads:  # the first read overlaps the checkpoint load and the device's start-up
            previous = install_signal_handlers(output_dir, len(cases))
            try:
                segmenter = _segmenter(weights, engine, plan, share, len(cases))
                records += segment_cases(
                    cases,
                    segmenter,
                    output_dir=output_dir,
                    on_labels=extra_outputs_writer(extras, output_dir, cases),
                    log_csv=log_csv,
                    verbose=verbose,
                    reads=reads,
                )
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    else:
        log(f"RUnet: no case to segment{' in ' + share.describe() if share.describe() else ''}")
    everyone = _gather_and_summarize(records, output_dir, share, time.perf_counter() - started)
    if extras is not None and share.launch.main:
        finish_extra_outputs(extras, output_dir, everyone)
    return everyone


def extra_outputs_writer(extras: ExtraOutputs | None, output_dir: Path, cases: Sequence[InputCase]) -> LabelsFn | None:
    """The ``on_labels`` of a folder run that writes ``extras`` for each case (None when none is asked); its
    warnings are logged, and a file it cannot write fails the case."""
    if extras is None or not extras.any():
        return None
    by_name = {case.name: case for case in cases}

    def write(name: str, volume: CTVolume, labels: np.ndarray) -> None:
        for warning in extras.write(output_dir, by_name[name], volume, labels):
            log(f"warning: {warning}")

    return write


def finish_extra_outputs(extras: ExtraOutputs, output_dir: Path, records: Sequence[CaseRecord]) -> None:
    """What the extras write once the cases are done (the statistics CSV); a failure is a warning line."""
    try:
        csv_path = extras.finish(output_dir, [r.name for r in records if r.status != "failed"])
    except (OSError, ValueError) as exc:
        log(f"warning: {output_dir}: cannot write the statistics across the cases ({exc})")
        return
    if csv_path is not None:
        log(f"statistics of the cases in {csv_path}")


def _cases_to_run(
    input_dir: Path, output_dir: Path, weights: Path, share: Share, skip_existing: bool, verbose: bool
) -> tuple[list[InputCase], list[CaseRecord]]:
    """This process's cases to segment, and the records of those --skip-existing keeps; the output folder created
    and cleared of temporary files an interrupted run left. RunError when the run cannot start."""
    try:
        cases, skipped = list_cases(input_dir)
    except InputError as exc:
        raise RunError(str(exc), 2) from None
    reads = [path for case in cases for path in case_files(case)]
    error = overlap_problem(input_dir, output_dir, [*reads, weights, weights.parent / "SHA256SUMS"])
    if error:
        raise RunError(error, 2)
    for line in input_skipped_lines(cases, skipped, verbose) if share.launch.main else []:
        log(shown(line))
    if not cases:
        raise RunError(f"{input_dir}: no input images ({', '.join(IMAGE_SUFFIXES)} files or DICOM series) found", 1)
    if problem := name_problem(output_dir):
        raise RunError(f"-o {problem}", 2)
    error = prepare_output(output_dir)
    if error:
        raise RunError(error, 1)
    try:  # other processes may be writing into the folder: only the files no process holds are removed
        stale = remove_abandoned_temp_files(output_dir)
    except OSError as exc:
        raise RunError(f"{output_dir}: cannot list the output folder ({exc.strerror or exc})", 1) from None
    if stale:
        log(f"removed {count(len(stale), 'temporary file')} left in {output_dir} by an interrupted run")
    cases, existing = share.select(cases), []
    if skip_existing:  # the label maps of <case>_0000.nii.gz inputs are checked against their input; others redone
        todo, existing, redone = split_existing([c.path for c in cases if c.kind == FLARE], output_dir)
        cases = [c for c in cases if c.kind != FLARE or c.path in set(todo)]
        for line in redone:
            log(line)
    return cases, existing


def _segmenter(weights: Path, engine: EngineOptions, plan: PlanOptions, share: Share, cases: int) -> Segmenter:
    """The Segmenter of the run, and the line that says what runs; RunError (exit code 2: a device, option, window
    or checkpoint the run cannot take) when it cannot be built."""
    from inference.engine import Segmenter

    try:
        segmenter = Segmenter.from_options(weights, engine, plan, share.launch)
    except (ValueError, CheckpointError) as exc:
        raise RunError(f"error: {exc}", 2) from None
    where = share.describe()
    log(
        f"RUnet: {count(cases, 'case')}{' (' + where + ')' if where else ''}, device {segmenter.device}, "
        f"backend {segmenter.backend}, precision {precision_name(segmenter.precision)}, phases {plan.phases or 'all'}, "
        f"weights {weights}"
    )
    return segmenter


def _gather_and_summarize(
    records: list[CaseRecord], output_dir: Path, share: Share, seconds: float
) -> list[CaseRecord]:
    """Every process's records (torchrun), with the summary of all printed on rank 0."""
    launch = share.launch
    join_group(launch)
    try:
        everyone = [record for part in gather(records, launch) for record in part]
    finally:
        leave_group(launch)
    lines, _ = summary_lines(everyone, output_dir, seconds, launch.world)
    for line in lines if launch.main else []:
        log(line)
    return everyone


def all_written(records: Sequence[CaseRecord]) -> bool:
    """Whether no case failed (every record "written" or "existing")."""
    return not any(r.status == "failed" for r in records)


# --- one image -----------------------------------------------------------------------------------------------------


def one_case(path: Path) -> InputCase:
    """The single case of ``path`` (a file, or a folder holding one image or one DICOM series); InputError (one
    line) when it holds none or several."""
    cases, _ = list_cases(path)
    if len(cases) != 1:
        names = ", ".join(c.name for c in cases[:5]) + (", ..." if len(cases) > 5 else "")
        found = f"{len(cases)} cases ({names})" if cases else "no image"
        raise InputError(f"{path}: holds {found}; segment() takes one image: segment_folder() takes a folder")
    return cases[0]


@lru_cache(maxsize=2)
def _cached_segmenter(weights: Path, engine: EngineOptions, plan: PlanOptions) -> Segmenter:
    from inference.engine import Segmenter

    return Segmenter.from_options(weights, engine, plan)


def segment(
    image: sitk.Image | str | Path,
    *,
    weights: str | Path | None = None,
    plan: PlanOptions = PlanOptions(),
    engine: EngineOptions = EngineOptions(),
) -> sitk.Image:
    """The label map of one CT image as a uint8 SimpleITK image of the input's size and geometry (0 background,
    1 liver, 2 kidney, 3 spleen, 4 pancreas).

    ``image``: a SimpleITK image in HU, the path of a 3D image file (``.nii.gz``, ``.nii``, ``.mha``, ``.nrrd``,
    ...), or of a DICOM series (a folder holding one series, or one of its slices). Every image gets the HU check
    (:mod:`inference.inputs.hu_check`): a +1024 offset is corrected, other doubts are a warning on stderr.

    weights, plan, engine: as :func:`segment_folder`. The network is loaded once per (weights, plan, engine) and
    kept for the next call. InputError for an image that cannot be segmented (not 3D, not scalar, ...); ValueError
    or CheckpointError for options or weights that cannot be used."""
    weights = default_weights() if weights is None else Path(weights)
    if isinstance(image, sitk.Image):
        volume, _ = apply_intensity_check(ct_volume(image), "the image")
    else:
        volume = read_input(one_case(Path(image)))
    for warning in volume.warnings:
        log(f"warning: {warning}")
    segmenter = _cached_segmenter(weights, engine, plan)
    return label_image(segmenter.segment(volume.image, volume.spacing_zyx), volume)
