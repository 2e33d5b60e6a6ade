"""The inference CLI: segment every `<case>_0000.nii.gz` of a folder into `<case>.nii.gz` label maps.

    python -m inference.predict -i IN_DIR -o OUT_DIR [options]

Logs go to stderr (on a terminal with a progress bar across cases and one within each case); the output folder
receives nothing but label maps. Exit code 0 when every case was written, 1 when some failed (listed at the end),
2 for usage errors.

A cohort in several processes: --part K --num-parts N (a batch system's tasks), or torchrun --nproc_per_node=G
-m inference.predict ... (one process per GPU; rank 0 prints the summary of all); --skip-existing resumes;
--log-csv FILE appends one row per case. README.md describes every option; inference.runner.segment_folder is
the same run from Python.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.case_log import log_csv_problem
from inference.checkpoint import default_weights
from inference.cli import UsageParser, log
from inference.cohort import share_from_options
from inference.engine_options import EngineOptions, add_engine_options
from inference.options import OptionError
from inference.plan import PHASES, SHORT_VOLUMES, STRIDE_CHOICES, PlanOptions
from inference.runner import RunError, all_written, exit_now, segment_folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the options checked and gathered: ``plan`` (PlanOptions), ``engine``
    (EngineOptions) and ``share`` (inference.cohort.Share). A usage error (including a missing weights file, or a
    file given for -i) prints one line with a hint and exits 2."""
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
        choices=PHASES,
        help="in-plane phases computed (of stride^2); the others are interpolated: faster, less exact",
    )
    p.add_argument(
        "--overlap", type=float, default=0.5, metavar="F", help="fraction of a z-window shared with the next, in [0, 1)"
    )
    p.add_argument(
        "--short-volume",
        default="fit",
        choices=SHORT_VOLUMES,
        help="volumes under one window: run one window of their depth (fit) or replicate-pad to a full one (pad)",
    )
    p.add_argument(
        "--stride",
        default="auto",
        choices=STRIDE_CHOICES,
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
    try:
        args.plan, args.engine = PlanOptions.from_args(args), EngineOptions.from_args(args)
    except OptionError as exc:
        p.error(exc.as_option())
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


def main(argv: list[str] | None = None) -> int:
    """Parse, run, and the exit code: 0 when every case of every process was written (or kept), 1 when one failed
    or the run could not start, 2 for what was asked wrong."""
    args = parse_args(argv)
    try:
        records = segment_folder(
            args.input,
            args.output,
            weights=args.weights,
            plan=args.plan,
            engine=args.engine,
            share=args.share,
            skip_existing=args.skip_existing,
            log_csv=args.log_csv,
            verbose=args.verbose,
        )
    except RunError as exc:
        log(str(exc))
        return exc.code
    return 0 if all_written(records) else 1


if __name__ == "__main__":
    exit_now(main())
