"""The inference CLI: segment every `<case>_0000.nii.gz` of a folder into `<case>.nii.gz` label maps.

    python -m inference.predict -i IN_DIR -o OUT_DIR [options]

Logs go to stderr (on a terminal with a progress bar across cases and one within each case); the output folder
receives nothing but label maps. Exit code 0 when every case was written, 1 when some failed (listed at the end),
2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from inference.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load_checkpoint
from inference.cli import UsageParser, bar, log
from inference.engine import Segmenter, resolve_precision, select_device
from inference.io import INPUT_SUFFIX, OUTPUT_SUFFIX, CTVolume, InputError, case_name, read_ct, write_labels
from inference.patching import PatchPlan


def find_cases(input_dir: Path) -> list[Path]:
    """Sorted `<case>_0000.nii.gz` files of a folder; every other entry is reported on stderr and skipped."""
    cases = []
    for entry in sorted(input_dir.iterdir()):
        if entry.is_file() and entry.name.endswith(INPUT_SUFFIX) and len(entry.name) > len(INPUT_SUFFIX):
            cases.append(entry)
        else:
            log(f"skipping {entry}: not an input image (<case>{INPUT_SUFFIX})")
    return cases


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
        default=Path(os.environ.get("RUNET_WEIGHTS", DEFAULT_WEIGHTS)),
        help="checkpoint, verified against the SHA256SUMS file beside it; $RUNET_WEIGHTS sets the default",
    )
    p.add_argument(
        "--device", default="auto", metavar="NAME", help="cuda, cuda:N or cpu; auto: CUDA when available, else cpu"
    )
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
        "--precision",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="network arithmetic; auto: bfloat16 on CUDA and on CPUs that compute it natively, else float32",
    )
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
    p.add_argument("--no-postprocess", action="store_true", help="skip the largest-component filter")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    error = prepare_output(args.output)
    if error:
        log(error)
        return 1
    cases = find_cases(args.input)
    if not cases:
        log(f"{args.input}: no input images (<case>{INPUT_SUFFIX}) found")
        return 1
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read")
    first_read = pool.submit(read_ct, cases[0])  # overlaps the checkpoint load and the device's start-up
    try:
        return _run(args, cases, pool, first_read)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


def _run(args: argparse.Namespace, cases: list[Path], pool: ThreadPoolExecutor, first_read: Future) -> int:
    started = time.perf_counter()
    try:
        device = select_device(args.device)
        precision = resolve_precision(args.precision, device)
        checkpoint = load_checkpoint(args.weights)
        plan = PatchPlan(
            phases=args.phases,
            overlap=args.overlap,
            size_multiple=checkpoint.config.size_multiple,
            short_volume=args.short_volume,
        )
    except (ValueError, CheckpointError) as exc:
        log(f"error: {exc}")
        return 2 if isinstance(exc, ValueError) else 1
    segmenter = Segmenter(
        checkpoint, device, plan, args.batch_size, precision, not args.no_postprocess, stride=args.stride
    )
    log(
        f"RUnet: {len(cases)} case(s), device {device}, precision {str(precision).removeprefix('torch.')}, "
        f"phases {args.phases}, weights {args.weights}"
    )

    failed: list[str] = []
    seconds: list[float] = []
    reads = prefetch_reads(cases, pool, first_read)
    for path, read in zip(bar(iterable=cases, desc="cases", unit="case", position=0), reads):
        name = case_name(path)
        start = time.perf_counter()
        windows = WindowProgress(name)
        try:
            volume: CTVolume = read.result()
            labels = segmenter.segment(volume, progress=windows)
            write_labels(args.output / f"{name}{OUTPUT_SUFFIX}", labels, volume)
        except InputError as exc:
            log(f"failed: {exc}")
            failed.append(name)
            continue
        except (OSError, RuntimeError, ValueError) as exc:
            log(f"failed: {path}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
            failed.append(name)
            continue
        finally:
            windows.close()
        seconds.append(time.perf_counter() - start)
        shape = "x".join(str(s) for s in reversed(volume.image.shape))
        log(f"{name}: {shape} voxels (canonical xyz), stride {segmenter.plan_for(volume).stride}, {seconds[-1]:.2f} s")
    mean = f", mean {sum(seconds) / len(seconds):.2f} s per case" if seconds else ""
    log(
        f"{len(seconds)} of {len(cases)} case(s) written to {args.output} in "
        f"{time.perf_counter() - started:.1f} s{mean}"
    )
    if failed:
        log(f"failed case(s): {', '.join(failed)}")
        return 1
    return 0


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
