"""The inference CLI: segment every `<case>_0000.nii.gz` of a folder into `<case>.nii.gz` label maps.

    python -m inference.predict -i IN_DIR -o OUT_DIR [options]

Logs go to stderr (on a terminal with a progress bar across cases and one within each case); the output folder
receives nothing but label maps. Exit code 0 when every case was written, 1 when some failed (listed at the end),
2 for usage errors.

A cohort in several processes: --part K --num-parts N (a batch system's tasks), or torchrun --nproc_per_node=G
-m inference.predict ... (one process per GPU; rank 0 prints the summary of all); --skip-existing resumes;
--log-csv FILE appends one row per case.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from inference.checkpoint import CheckpointError, default_weights, load_checkpoint
from inference.cli import UsageParser, bar, bars_off, log
from inference.cohort import (
    STALE_MARGIN_S,
    CaseRecord,
    append_row,
    case_record,
    gather,
    join_group,
    leave_group,
    log_csv_problem,
    peak_memory_mb,
    process_device,
    reset_peak_memory,
    share_from_options,
    split_existing,
    summary_lines,
)
from inference.device import precision_name, resolve_precision, select_device
from inference.engine import BACKENDS, Segmenter, resolve_backend
from inference.io import (
    INPUT_SUFFIX,
    OUTPUT_SUFFIX,
    OUTPUTS,
    InputError,
    OutputError,
    case_name,
    read_ct,
    remove_stale_temp_files,
    write_labels,
)
from inference.out_of_memory import out_of_memory
from inference.postprocess import DEFAULT_RULE, RULES
from inference.stride import PlanOptions


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


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """--device, --precision, --backend and --postprocess: where and how the network runs, and the component rule
    that follows it (shared with training.score)."""
    p.add_argument(
        "--device", default="auto", metavar="NAME", help="cuda, cuda:N or cpu; auto: CUDA when available, else cpu"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="network arithmetic; auto: bfloat16 on CUDA, and on the CPU the faster of float32 and bfloat16 for the "
        "backend, timed on the first window and remembered per machine in the user cache folder",
    )
    p.add_argument(
        "--backend",
        default=os.environ.get("RUNET_BACKEND", "auto"),
        choices=BACKENDS,
        help="network engine; auto: openvino on the CPU when installed, else torch ($RUNET_BACKEND sets the default)",
    )
    p.add_argument(
        "--postprocess",
        default=DEFAULT_RULE,
        choices=RULES,
        help="flare: keep the largest component of liver, spleen, pancreas and three of kidney; anatomy: the same, "
        "but the liver keeps its most cranial large component and the spleen none far below it; none: no filter",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; a usage error (including a missing weights file, or a file given for -i) prints one line
    with a hint and exits 2."""
    p = UsageParser(prog="python -m inference.predict", description=__doc__)
    p.add_argument(
        "-i", "--input", type=Path, required=True, metavar="DIR", help="folder of <case>_0000.nii.gz images (only read)"
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for the <case>.nii.gz label maps (created)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        metavar="PATH",
        default=default_weights(),
        help="checkpoint, verified against the SHA256SUMS file beside it; $RUNET_WEIGHTS sets the default",
    )
    add_engine_options(p)
    p.add_argument(
        "--phases",
        type=int,
        default=16,
        choices=(16, 4, 1),
        help="in-plane phases computed (of stride^2); the others are interpolated: faster, less exact",
    )
    p.add_argument(
        "--overlap", type=float, default=0.5, metavar="F", help="fraction of a z-window shared with the next, in [0, 1)"
    )
    p.add_argument("--batch-size", type=int, default=2, metavar="N", help="z-windows per network call")
    p.add_argument(
        "--short-volume",
        default="fit",
        choices=("pad", "fit"),
        help="volumes under one window: run one window of their depth (fit) or replicate-pad to a full one (pad)",
    )
    p.add_argument(
        "--stride",
        default="auto",
        choices=("auto", "4", "2", "1"),
        help="in-plane stride of the phase split; auto: 4 unless the strided voxel leaves the trained size range",
    )
    p.add_argument(
        "--part",
        type=int,
        metavar="K",
        help="segment only part K (from 0) of --num-parts N: the cases at positions K, K+N, K+2N, ... of the sorted "
        "list (under torchrun each process takes its share of it); $RUNET_PART sets it",
    )
    p.add_argument(
        "--num-parts", type=int, metavar="N", help="how many parts the sorted case list is dealt into; $RUNET_NUM_PARTS"
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep the label maps that exist and read whole (resume a run); a truncated or corrupt one is redone",
    )
    p.add_argument(
        "--log-csv",
        type=Path,
        metavar="FILE",
        help="append one row per case (size, spacing, stride, phases, seconds, peak memory, status) to FILE, which "
        "may not lie in the output folder",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="list skipped files; tracebacks of unexpected errors")
    args = p.parse_args(argv)
    if not 0.0 <= args.overlap < 1.0:
        p.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.input.is_file():
        p.error(f"-i {args.input} is a file; -i takes the folder that holds the images: -i {args.input.parent}")
    if not args.input.is_dir():
        p.error(f"-i {args.input}: input folder does not exist or is not a folder")
    if not args.weights.is_file():
        p.error(
            f"--weights {args.weights}: checkpoint file not found; pass --weights PATH (or set RUNET_WEIGHTS) to a "
            f"checkpoint with a SHA256SUMS file beside it"
        )
    try:
        args.share = share_from_options(args.part, args.num_parts)
    except ValueError as exc:
        p.error(str(exc))
    if args.log_csv is not None:
        problem = log_csv_problem(args.log_csv, args.output)
        if problem:
            p.error(problem)
    return args


def prefetch_reads(cases: list[Path], pool: ThreadPoolExecutor, first: Future | None = None) -> Iterator[Future]:
    """Futures of read_ct(case), in order, each read started while the previous case is being segmented.

    ``first`` is the already-submitted read of cases[0] (the CLI starts it before loading the network, so that
    reading the first case overlaps the start-up); its result or exception is raised by ``Future.result()``.
    """
    pending = first if first is not None else pool.submit(read_ct, cases[0])
    for k in range(len(cases)):
        current = pending
        if k + 1 < len(cases):
            pending = pool.submit(read_ct, cases[k + 1])
        yield current


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lead = args.share.launch.rank == 0
    if args.share.launch.distributed:
        bars_off()  # the processes share one terminal
    try:
        cases, skipped = find_cases(args.input)
    except OSError as exc:
        log(f"{args.input}: cannot list the input folder ({exc.strerror or exc})")
        return 2
    error = overlap_problem(args.input, args.output, [*cases, args.weights, args.weights.parent / "SHA256SUMS"])
    if error:
        log(error)
        return 2
    for line in skipped_lines(skipped, args.verbose) if lead else []:
        log(line)
    if not cases:
        log(f"{args.input}: no input images (<case>{INPUT_SUFFIX}) found")
        return 1
    error = prepare_output(args.output)
    if error:
        log(error)
        return 1
    started = time.time()
    try:  # other parts may be writing into the folder: only what is much older than this run is stale then
        stale = remove_stale_temp_files(args.output, older_than=started - STALE_MARGIN_S * args.share.sharded)
    except OSError as exc:
        log(f"{args.output}: cannot list the output folder ({exc.strerror or exc})")
        return 1
    if stale:
        log(f"removed {len(stale)} temporary file(s) left in {args.output} by an interrupted run")
    cases, existing = args.share.select(cases), []
    if args.skip_existing:
        cases, existing, redone = split_existing(cases, args.output)
        for line in redone:
            log(line)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read")
    # the first read overlaps the checkpoint load and the device's start-up
    first_read = pool.submit(read_ct, cases[0]) if cases else None
    previous = install_signal_handlers(args.output, len(cases))
    try:
        return _run(args, cases, existing, pool, first_read)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted_message(signum: int, output_dir: Path, total: int, written: list[Path], removed: list[Path]) -> str:
    """The line printed when a signal ends the run: what was written, and the partial file removed."""
    names = [p.name.removesuffix(OUTPUT_SUFFIX) for p in written]
    line = f"interrupted by {signal.Signals(signum).name}: {len(written)} of {total} case(s) written to {output_dir}"
    if names:
        line += f" ({', '.join(names)})"
    if removed:
        line += f"; removed the partial file {', '.join(str(p) for p in removed)}"
    return line


def install_signal_handlers(output_dir: Path, total: int) -> dict:
    """SIGTERM and SIGINT: remove the temporary file being written, list what was written, exit 128 + signal
    (143, 130). Returns the handlers replaced (none outside the main thread, where Python cannot set them)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: object) -> None:
        removed = OUTPUTS.remove_partial()
        log(interrupted_message(signum, output_dir, total, list(OUTPUTS.written), removed))
        exit_now(128 + signum)

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def case_failure(path: Path, exc: BaseException) -> str:
    """One line for a case that failed: our own errors as they are, anything else with its kind."""
    if isinstance(exc, (InputError, OutputError)):
        return str(exc)
    memory = out_of_memory(exc)
    if memory is not None:
        return f"{path}: {memory}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{path}: {type(exc).__name__}: {text[:300]}"


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


def _run(
    args: argparse.Namespace,
    cases: list[Path],
    existing: list[CaseRecord],
    pool: ThreadPoolExecutor,
    first_read: Future | None,
) -> int:
    """Segment ``cases`` (this process's share, less those --skip-existing keeps: ``existing``), then print the
    summary of every process's cases (rank 0) and return the exit code."""
    started = time.perf_counter()
    share = args.share
    records = list(existing)
    if existing:
        log(f"--skip-existing: {len(existing)} label map(s) in {args.output} read whole and are kept")
    for record in existing:
        _log_row(args, record)
    if not cases:
        log(f"RUnet: no case to segment{' in ' + share.describe() if share.describe() else ''}")
        return _finish(args, records, started)
    try:
        device = select_device(process_device(args.device, share.launch))
        precision = resolve_precision(args.precision, device)
        backend = resolve_backend(args.backend, device, precision)
        checkpoint = load_checkpoint(args.weights)
        options = PlanOptions(
            phases=args.phases,
            overlap=args.overlap,
            stride=args.stride if args.stride == "auto" else int(args.stride),
            short_volume=args.short_volume,
        )
        segmenter = Segmenter(
            checkpoint, device, options, args.batch_size, precision, args.postprocess, backend=backend
        )
    except (ValueError, CheckpointError) as exc:  # a device, option, window or checkpoint the run cannot take
        log(f"error: {exc}")
        return 2
    log(
        f"RUnet: {len(cases)} case(s){' (' + share.describe() + ')' if share.describe() else ''}, device {device}, "
        f"backend {backend}, precision {precision_name(precision)}, phases {args.phases}, weights {args.weights}"
    )

    reads = prefetch_reads(cases, pool, first_read)
    for path, read in zip(bar(iterable=cases, desc="cases", unit="case", position=0), reads):
        name = case_name(path)
        start = time.perf_counter()
        reset_peak_memory(segmenter.device)
        windows = WindowProgress(name)
        volume = case_plan = None
        try:
            volume = read.result()
            for warning in volume.warnings:
                log(f"warning: {warning}")
            case_plan = segmenter.plan_for(volume.spacing_zyx)  # the plan logged and the plan run
            labels = segmenter.segment(volume.image, volume.spacing_zyx, plan=case_plan, progress=windows)
            write_labels(args.output / f"{name}{OUTPUT_SUFFIX}", labels, volume)
            labels = None
            status, error = "written", ""
        except Exception as exc:  # every case alone: MemoryError and the unexpected included
            error = case_failure(path, exc)
            log(f"failed: {error}")
            if args.verbose and not isinstance(exc, (InputError, OutputError)):
                log("".join(traceback.format_exception(exc)).rstrip())
            status, labels = "failed", None  # free the failed case's memory before the next
        finally:
            windows.close()
        seconds = time.perf_counter() - start
        records.append(case_record(name, status, seconds, volume, case_plan, peak_memory_mb(segmenter.device), error))
        _log_row(args, records[-1])
        if status == "written":
            shape = "x".join(str(s) for s in reversed(volume.image.shape))
            log(f"{name}: {shape} voxels (canonical xyz), stride {case_plan.stride}, {seconds:.2f} s")
        volume = None
    return _finish(args, records, started)


def _log_row(args: argparse.Namespace, record: CaseRecord) -> None:
    """Append the case's row to --log-csv, if given; a failure to do so is a warning (the label map is there)."""
    if args.log_csv is None:
        return
    try:
        append_row(args.log_csv, record)
    except OSError as exc:
        log(f"warning: {args.log_csv}: cannot append the row of {record.name} ({exc.strerror or exc})")


def _finish(args: argparse.Namespace, records: list[CaseRecord], started: float) -> int:
    """Gather every process's records (torchrun) and print the summary on rank 0; 0 when no case of any process
    failed, else 1."""
    launch = args.share.launch
    join_group(launch)
    try:
        everyone = [record for part in gather(records, launch) for record in part]
    finally:
        leave_group(launch)
    lines, ok = summary_lines(everyone, args.output, time.perf_counter() - started, launch.world)
    for line in lines if launch.rank == 0 else []:
        log(line)
    return 0 if ok else 1


def exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process at once with ``code``.

    Every output file is complete and renamed by then; what is skipped is the interpreter's tear-down (freeing
    torch's modules and tensors one by one, about a second of the case's measured time on a 2-core CPU).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
