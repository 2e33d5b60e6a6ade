"""The inference CLI: segment every `<case>_0000.nii.gz` of a folder into `<case>.nii.gz` label maps.

    python -m inference.predict -i IN -o OUT [--weights W] [--device auto|cuda|cpu] [--phases 16|4|1]
                                [--overlap F] [--batch-size N] [--precision auto|float32|bfloat16|float16]

Logs go to stderr; the output folder receives nothing but label maps. Exit code 0 when every case was written,
1 when some failed (listed at the end), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from inference.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load_checkpoint
from inference.engine import BACKENDS, Segmenter, precision_name, resolve_backend, resolve_precision, select_device
from inference.io import INPUT_SUFFIX, OUTPUT_SUFFIX, CTVolume, InputError, case_name, read_ct, write_labels
from inference.patching import PatchPlan


def log(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)


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
    p = argparse.ArgumentParser(prog="python -m inference.predict", description=__doc__.splitlines()[0])
    p.add_argument("-i", "--input", type=Path, default=Path("/workspace/inputs"), help="folder of <case>_0000.nii.gz")
    p.add_argument("-o", "--output", type=Path, default=Path("/workspace/outputs"), help="folder for <case>.nii.gz")
    p.add_argument(
        "--weights",
        type=Path,
        default=Path(os.environ.get("RUNET_WEIGHTS", DEFAULT_WEIGHTS)),
        help="checkpoint (verified against SHA256SUMS beside it); default $RUNET_WEIGHTS or weights/runet.pt",
    )
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--phases", type=int, default=16, choices=(16, 4, 1), help="in-plane phases computed (of 16)")
    p.add_argument("--overlap", type=float, default=0.5, help="fraction of overlap between z-windows, in [0, 1)")
    p.add_argument("--batch-size", type=int, default=2, help="windows per network call")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto, float32, bfloat16 or float16; auto: bfloat16 on CUDA, and on the CPU the faster of float32 and "
        "bfloat16 for the backend, timed on the first window and remembered per machine in the user cache folder",
    )
    p.add_argument(
        "--backend",
        default=os.environ.get("RUNET_BACKEND", "auto"),
        choices=BACKENDS,
        help="network engine; auto: openvino on the CPU when installed, else torch ($RUNET_BACKEND; default auto)",
    )
    p.add_argument(
        "--short-volume",
        default="fit",
        choices=("pad", "fit"),
        help="volumes under one window: replicate-pad to a full window, or run one window of their depth",
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
    if not args.input.is_dir():
        log(f"{args.input}: input folder does not exist or is not a folder")
        return 2
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


def _run(args: argparse.Namespace, cases: list[Path], pool: ThreadPoolExecutor, first_read: Future) -> int:
    try:
        device = select_device(args.device)
        precision = resolve_precision(args.precision, device)
        backend = resolve_backend(args.backend, device, precision)
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
        checkpoint,
        device,
        plan,
        args.batch_size,
        precision,
        not args.no_postprocess,
        stride=args.stride,
        backend=backend,
    )
    log(
        f"RUnet: {len(cases)} case(s), device {device}, backend {backend}, precision {precision_name(precision)}, "
        f"phases {args.phases}, weights {args.weights}"
    )

    failed: list[str] = []
    reads = prefetch_reads(cases, pool, first_read)
    for path, read in zip(tqdm(cases, desc="cases", unit="case", file=sys.stderr, disable=None), reads):
        name = case_name(path)
        start = time.perf_counter()
        try:
            volume: CTVolume = read.result()
            labels = segmenter.segment(volume)
            write_labels(args.output / f"{name}{OUTPUT_SUFFIX}", labels, volume)
        except InputError as exc:
            log(f"failed: {exc}")
            failed.append(name)
            continue
        except (OSError, RuntimeError, ValueError) as exc:
            log(f"failed: {path}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}")
            failed.append(name)
            continue
        shape = "x".join(str(s) for s in reversed(volume.image.shape))
        log(
            f"{name}: {shape} voxels (canonical xyz), stride {segmenter.plan_for(volume).stride}, "
            f"{time.perf_counter() - start:.2f} s"
        )
    log(f"{len(cases) - len(failed)} of {len(cases)} case(s) written to {args.output}")
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
