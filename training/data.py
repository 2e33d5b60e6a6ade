"""FLARE-layout data sets: find image/label pairs, check them, and decode them once into a memory-mapped cache.

Layouts: nnU-Net (``imagesTr/<case>_0000.nii.gz`` + ``labelsTr/<case>.nii.gz``), FLARE21
(``TrainingImg/`` + ``TrainingMask/``), or flat (both files side by side, as ../shared/data keeps them).

Images are read with inference.ct_io.read_ct, so orientation and canonicalization are exactly those of inference;
labels are read with SimpleITK and brought to the canonical orientation with the image's Orientation. The cache
holds, per case, ``<case>.image.npy`` (int16 HU, canonical zyx), ``<case>.label.npy`` (uint8, canonical zyx) and
``<case>.json`` (spacing_zyx in mm, shape, the source files' sizes and mtimes); the arrays open with
np.load(mmap_mode="r"), so epochs never decompress gzip again. Intensity normalization is applied when patches
are cut (training/sampler.py), with the inference.preprocess.Normalization recorded in the checkpoint.

niftiio.atomic_file.write_atomic is how the cases a training folder gets are written (phantom/, training.phase_split).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.ct_io import CTVolume, read_ct
from inference.task import INPUT_SUFFIX
from niftiio.wording import count

LAYOUTS = (("imagesTr", "labelsTr"), ("TrainingImg", "TrainingMask"))
NUM_CLASSES = 5


class DataError(Exception):
    """The data set cannot be used; the message names every bad case and why."""


@dataclass(frozen=True)
class CasePair:
    """One training case: its name and the paths of its image and label files."""

    name: str
    image: Path
    label: Path


@dataclass
class CachedCase:
    """A decoded case: image (D, H, W) int16 HU and label (D, H, W) uint8, canonical zyx, memory-mapped."""

    name: str
    image: np.ndarray
    label: np.ndarray
    spacing_zyx: tuple[float, float, float]


def find_pairs(folder: Path) -> list[CasePair]:
    """The cases of a FLARE-layout folder, sorted by name.

    Every ``<case>_0000.nii.gz`` image needs a ``<case>.nii.gz`` label (and vice versa): DataError lists the
    unpaired files otherwise.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    img_dir = lab_dir = folder
    for a, b in LAYOUTS:
        if (folder / a).is_dir() and (folder / b).is_dir():
            img_dir, lab_dir = folder / a, folder / b
            break
    files = sorted(p for p in img_dir.glob(f"*{INPUT_SUFFIX}") if not p.name.startswith("."))
    images = {p.name[: -len(INPUT_SUFFIX)]: p for p in files}
    if img_dir == lab_dir:  # flat: <case>.nii.gz of an image <case>_0000.nii.gz is a label, even if it ends in _0000
        images = {
            n: p for n, p in images.items() if (img_dir / f"{p.name[: -len('.nii.gz')]}{INPUT_SUFFIX}") not in files
        }
    image_paths = set(images.values())
    labels = {
        p.name[: -len(".nii.gz")]: p
        for p in lab_dir.glob("*.nii.gz")
        if p not in image_paths and not p.name.startswith(".")
    }
    problems = [
        f"{n}: image {images[n]} has no label {lab_dir / (n + '.nii.gz')}" for n in sorted(images - labels.keys())
    ]
    problems += [
        f"{n}: label {labels[n]} has no image {img_dir / (n + INPUT_SUFFIX)}" for n in sorted(labels - images.keys())
    ]
    if problems:
        raise DataError("unpaired files:\n  " + "\n  ".join(problems))
    if not images:
        raise DataError(f"{folder}: no <case>{INPUT_SUFFIX} images found (imagesTr/, TrainingImg/ or flat)")
    return [CasePair(n, images[n], labels[n]) for n in sorted(images)]


def _pair_problem(pair: CasePair) -> str | None:
    """Why a pair is unusable (one line), or None. Reads headers only, plus the label's values."""
    try:
        ri = sitk.ImageFileReader()
        ri.SetFileName(str(pair.image))
        ri.ReadImageInformation()
        label = sitk.ReadImage(str(pair.label))
    except RuntimeError as exc:
        return f"cannot read ({str(exc).strip().splitlines()[-1][:120]})"
    if ri.GetSize() != label.GetSize():
        return f"image size {ri.GetSize()} != label size {label.GetSize()}"
    for what, a, b in (
        ("spacing", ri.GetSpacing(), label.GetSpacing()),
        ("origin", ri.GetOrigin(), label.GetOrigin()),
        ("direction", ri.GetDirection(), label.GetDirection()),
    ):
        if not np.allclose(a, b, rtol=1e-4, atol=1e-3):
            return f"image {what} {tuple(round(v, 4) for v in a)} != label {what} {tuple(round(v, 4) for v in b)}"
    arr = sitk.GetArrayViewFromImage(label)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            return f"label values are not integers (dtype {arr.dtype})"
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > NUM_CLASSES - 1:
        return f"label values {lo:g}..{hi:g} outside 0..{NUM_CLASSES - 1}"
    return None


def check_pairs(pairs: list[CasePair]) -> None:
    """Check every pair (same grid: size, spacing, origin, direction; labels within 0..4) before training.

    Raises DataError listing every bad pair by name, so that all problems show at once.
    """
    problems = [f"{p.name}: {msg}" for p in pairs if (msg := _pair_problem(p)) is not None]
    if problems:
        raise DataError(f"{count(len(problems), 'bad case')} of {len(pairs)}:\n  " + "\n  ".join(problems))


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


def read_pair(pair: CasePair) -> tuple[CTVolume, np.ndarray]:
    """(image read by inference.ct_io.read_ct, label map (D, H, W) uint8 in the same canonical zyx orientation)."""
    volume = read_ct(pair.image)
    return volume, read_label(pair, volume)


def read_label(pair: CasePair, volume: CTVolume) -> np.ndarray:
    """The pair's label map as a (D, H, W) uint8 array in the canonical zyx orientation of its image ``volume``;
    DataError when the shapes differ."""
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(pair.label)))
    label = np.ascontiguousarray(volume.orientation.to_canonical(label)).astype(np.uint8)
    if volume.image.shape != label.shape:
        raise DataError(f"{pair.name}: canonical image {volume.image.shape} != label {label.shape}")
    return label


def cache_case(pair: CasePair, cache_dir: Path) -> CachedCase:
    """Decode one case into cache_dir (once; reused while the source files are unchanged) and memory-map it."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / f"{pair.name}.json"
    img_path, lab_path = cache_dir / f"{pair.name}.image.npy", cache_dir / f"{pair.name}.label.npy"
    stamp = {"image": _stamp(pair.image), "label": _stamp(pair.label)}
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    if meta is None or meta.get("stamp") != stamp or not img_path.is_file() or not lab_path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        volume, label = read_pair(pair)
        image = np.ascontiguousarray(volume.image).astype(np.int16)
        for arr, path in ((image, img_path), (label, lab_path)):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
            np.save(tmp, arr)
            tmp.replace(path)
        meta = {"stamp": stamp, "shape_zyx": list(image.shape), "spacing_zyx": list(volume.spacing_zyx)}
        tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(meta_path)
    return CachedCase(
        name=pair.name,
        image=np.load(img_path, mmap_mode="r"),
        label=np.load(lab_path, mmap_mode="r"),
        spacing_zyx=tuple(float(s) for s in meta["spacing_zyx"]),
    )


def load_dataset(folder: Path, cache_dir: Path, check: bool = True) -> list[CachedCase]:
    """find_pairs + check_pairs + cache_case for every case of a FLARE-layout folder."""
    pairs = find_pairs(folder)
    if check:
        check_pairs(pairs)
    return [cache_case(p, cache_dir) for p in pairs]


def split_cases(
    names: list[str], val_fraction: float = 0.1, seed: int = 0, val_names: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """(train names, validation names): an explicit list, else a seeded random fraction (at least one case when
    val_fraction > 0 and there are 2 or more cases). Order follows ``names``."""
    if val_names:
        unknown = sorted(set(val_names) - set(names))
        if unknown:
            raise ValueError(f"validation cases not in the data set: {unknown}")
        val = set(val_names)
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = int(round(val_fraction * len(names)))
        if val_fraction > 0 and len(names) >= 2:
            n_val = max(1, n_val)
        perm = np.random.default_rng(seed).permutation(len(names))
        val = {names[i] for i in perm[:n_val]}
    train = [n for n in names if n not in val]
    if not train:
        raise ValueError("no training cases left after the validation split")
    return train, [n for n in names if n in val]
