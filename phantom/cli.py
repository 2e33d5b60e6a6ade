"""Synthetic abdominal CT with FLARE labels (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas).

python -m phantom --out DIR --cases N --seed S [--mode phantom|labels|mix] [--layout nnunet|flare21]
[--flat] [--images-only] [--size 512] [--slices 20 300] [--phase venous] [--generator-version 3]
[--templates DIR] [--templates-only NAME ...] [--templates-exclude NAME ...] [--render PNG]

Writes a data set with phantom/generate.py's `write_dataset`, or with --render a PNG of phantoms beside real cases
(phantom/render.py). Exit code 0 on success, 2 for a bad option value (one line on stderr), including a case larger
than the memory this process may use (checked before anything is generated), 1 when memory runs out all the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.preprocess import usable_memory
from niftiio.command_line import UsageParser
from phantom.generate import DEFAULT_VERSION, LAYOUTS, MODES, VERSIONS, write_dataset
from phantom.hu_table import PHASES_V3
from phantom.render import render_comparison
from phantom.template_split import SPLITS

# Peak bytes per voxel of the largest case that generating one case holds above the start-up: measured 23 (phantom
# mode) and 26 (labels mode) at 512 x 512 x 120 voxels, more at small sizes where fixed costs weigh. About the lower
# one, so that a case that fits is not refused; one that runs out all the same is a one-line error too.
GENERATE_BYTES_PER_VOXEL = 24


def memory_problem(size_xy: int, max_slices: int) -> str | None:
    """A one-line refusal when a case of ``size_xy`` x ``size_xy`` x ``max_slices`` voxels needs more memory than this
    process may use (:func:`inference.preprocess.usable_memory`); None when it fits or nothing can be read."""
    voxels = size_xy * size_xy * max_slices
    need = voxels * GENERATE_BYTES_PER_VOXEL
    usable = usable_memory()
    if usable is None or need <= usable[0]:
        return None
    return (
        f"--size {size_xy} with up to {max_slices} slices is {voxels:,} voxels a case, about {need / 2**30:,.1f} GB "
        f"to generate, more than the {max(usable[0], 0) / 2**30:,.1f} GB this process may use ({usable[1]})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m phantom`, each with its default."""
    p = UsageParser(prog="python -m phantom", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--cases", type=int, default=1, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="seed; case k is the same for a given seed whatever --cases")
    p.add_argument(
        "--mode", choices=MODES, default="phantom", help="analytic anatomy, template label maps, or either per case"
    )
    p.add_argument("--layout", choices=LAYOUTS, default="nnunet", help="imagesTr/labelsTr or TrainingImg/TrainingMask")
    p.add_argument("--flat", action="store_true", help="images and labels side by side in --out")
    p.add_argument("--images-only", action="store_true", help="write no label maps")
    p.add_argument("--prefix", default="PHANTOM", help="case names: <prefix>_0000, <prefix>_0001, ...")
    p.add_argument("--size", type=int, default=512, help="in-plane voxels")
    p.add_argument(
        "--slices", type=int, nargs=2, metavar=("MIN", "MAX"), default=(20, 300), help="range of slice counts"
    )
    p.add_argument(
        "--spacing-xy",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=None,
        help="in-plane spacing range, mm; default 0.6-1.0 mm scaled by 512 / --size",
    )
    p.add_argument(
        "--spacing-z",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=None,
        help="slice spacing range, mm; default 0.8-5 (version 2), 0.6-5 (version 3)",
    )
    p.add_argument(
        "--phase",
        choices=PHASES_V3,
        default=None,
        help="contrast phase; default: drawn per case ('delayed': version 3)",
    )
    p.add_argument(
        "--generator-version", type=int, choices=VERSIONS, default=DEFAULT_VERSION, help="phantom generator version"
    )
    p.add_argument(
        "--orientations",
        choices=("canonical", "axial", "any"),
        default="axial",
        help="image orientations drawn: LPS only, axial ones (flips and in-plane swaps), or any axis permutation",
    )
    p.add_argument(
        "--templates",
        type=Path,
        nargs="+",
        default=None,
        help="templates folder(s) for --mode labels and mix; default: versions 4-5 the shared data's anatomy/ and "
        "templates/, versions 2-3 its templates/ ($RUNET_SHARED_DATA, else ../shared/data)",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="versions 4-5: the templates of this split of phantom/template_split.py "
        "(the scored cases' maps are in none)",
    )
    p.add_argument("--templates-only", nargs="+", default=(), metavar="NAME", help="use only these templates")
    p.add_argument("--templates-exclude", nargs="+", default=(), metavar="NAME", help="never use these templates")
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="PNG",
        help="render a phantom beside real cases to PNG (visual check) instead of writing a data set",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    options = dict(
        size_xy=args.size,
        slice_range=tuple(args.slices),
        spacing_xy_range=args.spacing_xy,
        spacing_z_range=None if args.spacing_z is None else tuple(args.spacing_z),
        phase=args.phase,
        mode=args.mode,
        orientations=args.orientations,
        templates_dir=None
        if args.templates is None
        else (args.templates[0] if len(args.templates) == 1 else args.templates),
        templates_split=args.split,
        templates_only=tuple(args.templates_only),
        templates_exclude=tuple(args.templates_exclude),
        generator_version=args.generator_version,
    )
    try:
        if args.render is not None:
            render_comparison(
                args.render, seed=args.seed, mode=args.mode, phase=args.phase, generator_version=args.generator_version
            )
            return 0
        if args.out is None:
            p.error("--out is required unless --render is given")
        problem = memory_problem(args.size, args.slices[1]) if args.size >= 1 and args.slices[1] >= 1 else None
        if problem:
            raise ValueError(problem)
        write_dataset(
            args.out,
            args.cases,
            args.seed,
            layout=args.layout,
            flat=args.flat,
            images_only=args.images_only,
            prefix=args.prefix,
            verbose=True,
            **options,
        )
    except (ValueError, FileNotFoundError) as exc:
        return p.fail(str(exc))
    except MemoryError:
        size = f"{args.size} x {args.size}"
        print(f"error: out of memory generating a {size} case; try a smaller --size", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
