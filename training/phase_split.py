"""Real scans as training cases at the voxel size inference gives them: each case split into its in-plane phases.

    python -m training.phase_split --data IN --out OUT [--entries N]

Inference splits a scan of in-plane spacing s mm at the stride (4, 2 or 1) that brings stride x s into the trained
range (inference.plan.choose_stride; 2.4-4.0 mm by default): a 0.8 mm scan is seen as 16 sub-volumes of 3.2 mm
voxels, a 3 mm scan as itself. A run that trains at ``--stride 1`` (as the shipped weights did, on 3 mm phantoms)
sees a real scan at that voxel size only when the scan arrives already split. This command writes, for every case
of the FLARE-layout folder IN, each phase I[:, i::stride, j::stride] (image and label cut alike, spacing and origin
those of the sub-grid, direction unchanged) as a case of its own in OUT (imagesTr/, labelsTr/): ``<case>_p<i><j>``.

``--entries N`` makes every case count N times in OUT, whatever its stride: its phases in order, repeated (the
repeats are symbolic links, ``<case>_p<i><j>_r<k>``), so a case split into 16 phases and one split into 1 weigh the
same in an epoch. N must be a multiple of every case's phase count; 0 (the default) writes each phase once.

Inputs are only read; every file is written under a temporary name and renamed when whole. Exit code 0 when every
case was written, 1 when some could not be read (one line each), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import SimpleITK as sitk

from inference.cli import UsageParser
from inference.ct_io import Orientation
from inference.plan import SEEN_INPLANE_MM, STRIDES, choose_stride
from inference.task import INPUT_SUFFIX
from niftiio.atomic_file import write_atomic
from niftiio.wording import count
from training.data import DataError, check_pairs, find_pairs

LABEL_SUFFIX = ".nii.gz"


def inplane_axes(image: sitk.Image) -> tuple[int, int]:
    """The two SimpleITK index axes (0 x, 1 y, 2 z) that lie in the axial plane of ``image``: every axis but the one
    that its direction maps closest to the patient's z (as inference.ct_io.Orientation canonicalizes)."""
    z_index_axis = 2 - Orientation.from_direction(image.GetDirection()).perm[0]
    a, b = (axis for axis in range(3) if axis != z_index_axis)
    return a, b


def stride_of(image: sitk.Image, seen_mm: tuple[float, float] = SEEN_INPLANE_MM) -> int:
    """The stride inference's ``--stride auto`` gives this image: the largest of 4, 2, 1 whose strided in-plane
    voxel (stride x mean in-plane spacing, mm) lies in ``seen_mm``."""
    a, b = inplane_axes(image)
    spacing = image.GetSpacing()
    return choose_stride((spacing[b], spacing[a]), seen_mm, STRIDES)


def phases(image: sitk.Image, stride: int) -> Iterator[tuple[tuple[int, int], sitk.Image]]:
    """((i, j), sub-image) for the stride**2 in-plane phases of ``image``: index i::stride along its first in-plane
    axis and j::stride along the second (inplane_axes), every slice. SimpleITK gives each sub-image the spacing x
    stride and the origin of its first voxel; the direction is unchanged."""
    a, b = inplane_axes(image)
    for i in range(stride):
        for j in range(stride):
            index: list[slice] = [slice(None)] * 3
            index[a], index[b] = slice(i, None, stride), slice(j, None, stride)
            yield (i, j), image[tuple(index)]


def split_case(name: str, image_path: Path, label_path: Path, out: Path, entries: int) -> tuple[int, int]:
    """Write the phases of one case (and the links that repeat them up to ``entries``) into ``out``; returns
    (stride, files written per folder). ValueError when ``entries`` is not a multiple of the phase count."""
    image = sitk.ReadImage(str(image_path))
    label = sitk.ReadImage(str(label_path))
    stride = stride_of(image)
    count = stride * stride
    if entries and entries % count:
        raise ValueError(f"--entries {entries} is not a multiple of its {count} phases (stride {stride})")
    repeats = entries // count if entries else 1
    for ((i, j), sub_image), (_, sub_label) in zip(phases(image, stride), phases(label, stride), strict=True):
        phase = f"{name}_p{i}{j}"
        for folder, suffix, sub in (("imagesTr", INPUT_SUFFIX, sub_image), ("labelsTr", LABEL_SUFFIX, sub_label)):
            target = out / folder / f"{phase}{suffix}"
            write_atomic(target, partial(sitk.WriteImage, sub, useCompression=True))
            for r in range(1, repeats):
                link = out / folder / f"{phase}_r{r}{suffix}"
                link.unlink(missing_ok=True)
                os.symlink(target.name, link)
    return stride, count * repeats


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = UsageParser(prog="python -m training.phase_split", description=__doc__)
    p.add_argument("--data", type=Path, required=True, help="FLARE-layout folder of the cases to split (read only)")
    p.add_argument("--out", type=Path, required=True, help="folder to write imagesTr/ and labelsTr/ into")
    p.add_argument("--entries", type=int, default=0, metavar="N", help="entries per case (0: one per phase)")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        p.error(f"--data {args.data}: not a folder")
    if args.entries < 0:
        p.error(f"--entries must be >= 0, got {args.entries}")
    if args.out.resolve() == args.data.resolve() or args.data.resolve() in args.out.resolve().parents:
        p.error(f"--out {args.out} lies in --data {args.data}: the inputs are never written to")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        pairs = find_pairs(args.data)
    except DataError as exc:
        print(f"{args.data}: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for pair in pairs:
        try:
            check_pairs([pair])
            stride, written = split_case(pair.name, pair.image, pair.label, args.out, args.entries)
        except (DataError, RuntimeError, ValueError, OSError) as exc:
            reason = str(exc).strip().splitlines()[-1].strip()  # check_pairs names the case
            print(reason if isinstance(exc, DataError) else f"{pair.image}: {reason}", file=sys.stderr)
            failed += 1
            continue
        print(f"{pair.name}: stride {stride}, {count(written, 'case')} written", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
