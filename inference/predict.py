"""The inference CLI: segment every case of a folder (or one file) into `<case>.nii.gz` label maps.

    python -m inference.predict -i IN -o OUT_DIR [options]

IN: a folder of `<case>_0000.nii.gz` images (the FLARE layout: exactly those are read), any other folder (its 3D
images: .nii.gz, .nii, .mha, .mhd, .nrrd, .nhdr; and its DICOM series, one case per series, those of its
subfolders too), or one image file or DICOM slice. Every case gets the HU check (a warning line for an image that
is not CT in Hounsfield units; an image stored with +1024 is read with 1024 subtracted, and the warning says so).

Logs go to stderr (on a terminal with a progress bar across cases and one within each case); the output folder
receives nothing but label maps. --output-type dicom, --per-organ, --statistics and --preview write into
subfolders of it (dicom/, per_organ/, statistics/, preview/), only when asked. Exit code 0 when every case was
written, 1 when some failed (listed at the end), 2 for usage errors.

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
from inference.device import device_name
from inference.engine_options import EngineOptions, add_engine_options
from inference.inputs.dicom_series import is_dicom_file
from inference.options import OptionError
from inference.outputs.case_extras import DICOM_SEG, NIFTI, OUTPUT_TYPES, ExtraOutputs
from inference.plan import PHASES, SHORT_VOLUMES, STRIDE_CHOICES, PlanOptions
from inference.runner import RunError, all_written, exit_now, segment_folder
from inference.task import INPUT_SUFFIX

INPUT_HELP = f"folder of <case>{INPUT_SUFFIX} images, or of other 3D images and DICOM series, or one file (only read)"


def build_parser() -> UsageParser:
    """The command line's parser: every option of ``python -m inference.predict``, unchecked (README.md's options
    table lists the same ones)."""
    p = UsageParser(prog="python -m inference.predict", description=__doc__)
    p.add_argument("-i", "--input", type=Path, required=True, metavar="IN", help=INPUT_HELP)
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
        choices=PHASES,
        help="in-plane phases computed of the volume's stride^2 (16 at stride 4); the others are interpolated: "
        "faster, less exact (default: all)",
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
    add_extra_output_options(p)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="why each skipped file was skipped; tracebacks of errors",
    )
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the options checked and gathered: ``plan`` (PlanOptions), ``engine``
    (EngineOptions) and ``share`` (inference.cohort.Share). A usage error (including a missing weights file, or a
    file given for -i) prints one line with a hint and exits 2."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        args.plan, args.engine = PlanOptions.from_args(args), EngineOptions.from_args(args)
    except OptionError as exc:
        p.error(exc.as_option())
    check_input_output(p, args)
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
    args.extras = ExtraOutputs(args.output_type, args.per_organ, args.statistics, args.preview)
    return args


def check_input_output(p: UsageParser, args: argparse.Namespace) -> None:
    """The usage errors of -i, -o, --device and --output-type (one line, exit 2): -i missing, -o an existing
    file, cuda without a GPU, a DICOM SEG asked for a single file that is not a DICOM slice."""
    if not args.input.exists():
        p.error(f"-i {args.input}: input folder or file does not exist")
    if args.output.exists() and not args.output.is_dir():
        p.error(f"-o {args.output} is a file; -o takes a folder (created when missing) for the label maps")
    problem = device_problem(args.engine.device)
    if problem:
        p.error(problem)
    if args.output_type == DICOM_SEG and not args.input.is_dir() and not is_dicom_file(args.input):
        p.error(
            f"--output-type dicom: -i {args.input} is not a DICOM series; a DICOM SEG references the series it "
            "segments (take -i to a DICOM series folder, or leave --output-type nifti)"
        )


def add_extra_output_options(p: argparse.ArgumentParser) -> None:
    """The outputs besides the label maps (inference.outputs.case_extras), each in a subfolder of -o."""
    p.add_argument(
        "--output-type",
        choices=OUTPUT_TYPES,
        default=NIFTI,
        help="dicom: also a DICOM SEG per DICOM-series case, in OUT/dicom/<case>.dcm (the .nii.gz label map is "
        "written too; other inputs get a warning and the label map only)",
    )
    p.add_argument(
        "--per-organ", action="store_true", help="one binary mask per organ: OUT/per_organ/<case>/<organ>.nii.gz"
    )
    p.add_argument(
        "--statistics",
        action="store_true",
        help="per organ volume (mL), mean/median/std HU, voxels, bounding box: OUT/statistics/<case>.json and "
        "OUT/statistics/statistics.csv across the cases",
    )
    p.add_argument(
        "--preview", action="store_true", help="a PNG per case, 3 views through each organ: OUT/preview/<case>.png"
    )


def device_problem(name: str) -> str | None:
    """A --device that this machine cannot give (cuda without CUDA), in one line; None otherwise."""
    if not name.startswith("cuda"):  # a CPU run on OpenVINO does not load torch to parse its options
        return None
    try:
        device_name(name)
    except ValueError:
        return f"--device {name}: no CUDA device is available here; use --device cpu (or auto)"
    return None


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
            extras=args.extras,
        )
    except RunError as exc:
        log(str(exc))
        return exc.code
    return 0 if all_written(records) else 1


if __name__ == "__main__":
    exit_now(main())
