"""Synthetic abdominal CT with FLARE labels (0 background, 1 liver, 2 kidney, 3 spleen, 4 pancreas).

Two modes, both deterministic from a seed and the generator version (2, 3 or 4, default 4; docs/phantom.md):

- "phantom": an analytic anatomy built in LPS patient millimetres, deformed by a smooth random displacement, and
  sampled on a random voxel grid (spacing, slice count, orientation), then given Hounsfield units for a contrast
  phase, texture, partial-volume blur and noise. Version 2: the abdomen of phantom/anatomy.py inside its
  organ band; version 3: the whole trunk with the pelvis in a FLARE field of view (phantom/trunk_scan.py).
- "labels": a real whole-anatomy label map from the shared templates folder, deformed and given Hounsfield
  intensities per class, SynthSeg style (phantom/from_labels.py; version 3 takes them from the HU table of
  phantom/hu_table.py).
- "mix": each case draws one of the two with equal probability.

Images are SimpleITK int16 HU, labels SimpleITK uint8 on the identical grid. Arrays inside are numpy zyx; SimpleITK
sizes, spacings and origins are xyz, in mm.

The command line is phantom/cli.py (`python -m phantom`).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.task import INPUT_SUFFIX
from niftiio.atomic_file import write_atomic
from niftiio.file_mode import apply_umask
from phantom.abdomen_scan import generate_phantom_canonical
from phantom.from_labels import synthesize_canonical
from phantom.grid import draw_spacing, make_image, orientation_set
from phantom.hu_table import PHASES_V3
from phantom.template_split import SPLITS
from phantom.tissues import PHASES
from phantom.trunk_scan import generate_phantom_canonical_v3

MODES = ("phantom", "labels", "mix")
VERSIONS = (2, 3, 4, 5)
DEFAULT_VERSION = 4
SPACING_Z = {
    2: (0.8, 5.0),
    3: (0.6, 5.0),
    4: (0.6, 5.0),
    5: (0.6, 5.0),
}  # default slice spacing range (mm) per generator version
LAYOUTS = ("nnunet", "flare21")
MAX_EXTENT_Z = 500.0  # mm; drawn slice spacings keep slices * spacing below this


def _check_common(seed: int, size_xy: int, phase: str | None, mode: str, version: int = 2) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(size_xy, (int, np.integer)) or size_xy < 32:
        raise ValueError(f"size_xy must be an integer >= 32, got {size_xy!r}")
    if version not in VERSIONS:
        raise ValueError(f"generator_version must be one of {VERSIONS}, got {version!r}")
    phases = PHASES if version == 2 else PHASES_V3
    if phase is not None and phase not in phases:
        raise ValueError(f"phase must be one of {phases} or None (generator version {version}), got {phase!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _draw_geometry(rng, size_xy, slices, spacing, slice_range, spacing_xy_range, spacing_z_range):
    """(n slices, (sx, sy, sz) mm) honouring fixed `slices` / `spacing` (xyz mm) when given."""
    lo_hi = (slices, slices) if slices is not None else tuple(slice_range)
    if slices is not None and (not isinstance(slices, (int, np.integer)) or slices < 1):
        raise ValueError(f"slices must be a positive integer, got {slices!r}")
    n, sxy, sz = draw_spacing(rng, size_xy, lo_hi, spacing_xy_range, tuple(spacing_z_range), MAX_EXTENT_Z)
    if spacing is not None:
        return n, _fixed_spacing(spacing)
    return n, (sxy, sxy, sz)


def generate_case(seed: int, **options) -> tuple[sitk.Image, sitk.Image]:
    """One synthetic case: (image, label), SimpleITK int16 HU and uint8 FLARE labels on the same grid.

    The options are generate_case_info's.
    """
    img, lab, _ = generate_case_info(seed, **options)
    return img, lab


def generate_case_info(
    seed: int,
    *,
    size_xy: int = 512,
    slices: int | None = None,
    spacing: Sequence[float] | None = None,
    phase: str | None = None,
    mode: str = "phantom",
    slice_range: tuple[int, int] = (20, 300),
    spacing_xy_range: tuple[float, float] | None = None,
    spacing_z_range: tuple[float, float] | None = None,
    orientations: str = "axial",
    templates_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    templates_only: Sequence[str] = (),
    templates_exclude: Sequence[str] = (),
    templates_split: str = "all",
    generator_version: int = DEFAULT_VERSION,
) -> tuple[sitk.Image, sitk.Image, dict]:
    """One synthetic case: (image, label, info). info: a JSON-ready dict (mode, phase, template, version's extras).

    seed: the whole case follows from it (and from generator_version: 2 reproduces version 2's cases byte for byte).
    size_xy: in-plane voxels of the canonical grid (phantom mode; labels mode may differ where a template's field of
    view is smaller). slices: fixed slice count, else drawn from slice_range. spacing: fixed (x, y, z) mm, else
    in-plane from spacing_xy_range (default (0.6, 1.0) * 512 / size_xy, a 307-512 mm field of view) and between
    slices from spacing_z_range (default 0.8-5 mm for version 2, 0.6-5 mm for version 3). Version 2 keeps
    slices * spacing_z <= 500 mm inside its organ band; version 3 draws a FLARE field of view (trunk_scan.py) and
    sets the slice count to cover it. phase: 'plain', 'arterial', 'venous' (or 'delayed', version 3), else drawn.
    orientations: 'canonical', 'axial' or 'any' (see phantom.grid.orientation_set). templates_only /
    templates_exclude: template names (or their prefixes, e.g. AMOS_0013) that labels mode may / may not use.
    """
    _check_common(seed, size_xy, phase, mode, generator_version)
    if templates_split not in SPLITS or (templates_split != "all" and generator_version < 4):
        raise ValueError(f"templates_split must be one of {SPLITS} ('all' before version 4), got {templates_split!r}")
    if spacing_z_range is None:
        spacing_z_range = SPACING_Z[generator_version]
    rng = np.random.default_rng(seed)
    if mode == "mix":
        mode = "phantom" if rng.random() < 0.5 else "labels"
    if phase is None:
        phase = str(rng.choice(PHASES if generator_version == 2 else PHASES_V3))
    directions = orientation_set(orientations)
    # the orientation has its own stream, so that the anatomy of a seed is the same whatever the orientation set
    direction = directions[int(np.random.default_rng([seed, 1]).integers(len(directions)))]
    info: dict = {"generator_version": generator_version, "mode": mode, "phase": phase, "template": None}
    if mode == "phantom" and generator_version >= 3:  # version 4 changed labels mode only
        geometry = dict(slice_range=tuple(slice_range), spacing_xy_range=spacing_xy_range)
        image, label, grid, extra = generate_phantom_canonical_v3(
            rng,
            size_xy,
            phase,
            slices=slices,
            spacing=_fixed_spacing(spacing),
            spacing_z_range=spacing_z_range,
            **geometry,
        )
        info |= extra
    else:
        n, sp = _draw_geometry(rng, size_xy, slices, spacing, slice_range, spacing_xy_range, spacing_z_range)
        if mode == "phantom":
            image, label, grid = generate_phantom_canonical(rng, size_xy, n, sp, phase)
        else:
            select = (tuple(templates_only), tuple(templates_exclude))
            image, label, grid, template = synthesize_canonical(
                rng,
                size_xy,
                n,
                sp,
                phase,
                templates_dir,
                version=generator_version,
                select=select,
                split=templates_split,
            )
            info["template"] = template
    img = make_image(image, grid, direction)
    lab = make_image(label, grid, direction)
    return img, lab, info


def _fixed_spacing(spacing: Sequence[float] | None) -> tuple[float, float, float] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or min(sp) <= 0:
        raise ValueError(f"spacing must be three positive numbers (x, y, z mm), got {spacing!r}")
    return sp


def _case_paths(out_dir: Path, name: str, layout: str, flat: bool) -> tuple[Path, Path]:
    if flat:
        return out_dir / f"{name}{INPUT_SUFFIX}", out_dir / f"{name}.nii.gz"
    img_dir, lab_dir = ("imagesTr", "labelsTr") if layout == "nnunet" else ("TrainingImg", "TrainingMask")
    return out_dir / img_dir / f"{name}{INPUT_SUFFIX}", out_dir / lab_dir / f"{name}.nii.gz"


def write_manifest(path: Path, cases: dict) -> None:
    """Write {"cases": cases} as JSON to `path` through a temporary file and a rename; cases already listed in an
    existing manifest (an earlier call with other --start or --prefix) are kept unless written again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged: dict = {}
    if path.exists():
        try:
            merged = json.loads(path.read_text()).get("cases", {})
        except (OSError, ValueError, AttributeError):
            merged = {}
    merged.update(cases)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump({"cases": merged}, f, indent=1, sort_keys=True)
    apply_umask(tmp)  # mkstemp's 0600 would stay after the rename
    os.replace(tmp, path)


def write_dataset(
    out_dir: str | os.PathLike,
    cases: int,
    seed: int,
    *,
    layout: str = "nnunet",
    flat: bool = False,
    images_only: bool = False,
    prefix: str = "PHANTOM",
    start: int = 0,
    verbose: bool = False,
    **case_options,
) -> list[str]:
    """Write `cases` cases and return their names (`<prefix>_0000`, ...).

    layout 'nnunet': imagesTr/<case>_0000.nii.gz and labelsTr/<case>.nii.gz; 'flare21': TrainingImg/ and TrainingMask/.
    flat: both files side by side in out_dir (as ../shared/data keeps them). images_only: skip the labels. Case i uses
    the seed sequence (seed, i), so a case does not depend on how many others are written. case_options are passed to
    generate_case_info. `<out_dir>/manifest.json` records every case written by this call: its seed, generator
    version, mode, phase and the template it came from (labels mode), rewritten (whole) after each case.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not isinstance(cases, (int, np.integer)) or cases < 0:
        raise ValueError(f"cases must be a non-negative integer, got {cases!r}")
    out = Path(out_dir)
    names = []
    manifest: dict = {}
    for i in range(start, start + cases):
        name = f"{prefix}_{i:04d}"
        case_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        img, lab, info = generate_case_info(case_seed, **case_options)
        img_path, lab_path = _case_paths(out, name, layout, flat)
        write_atomic(img_path, partial(sitk.WriteImage, img, useCompression=True))
        if not images_only:
            write_atomic(lab_path, partial(sitk.WriteImage, lab, useCompression=True))
        manifest[name] = {"seed": case_seed, **info}
        write_manifest(out / "manifest.json", manifest)
        if verbose:
            print(
                f"{name}: size {img.GetSize()} spacing {tuple(round(s, 3) for s in img.GetSpacing())}",
                file=sys.stderr,
            )
        names.append(name)
    return names
