"""The fixed split of the real label maps that labels mode learns from: which templates training may draw, which are
held out for validation, and which may never be used because they are the label maps of scored real cases.

Template names are file-name prefixes (`WORD_0014` matches `WORD_0014_label.nii.gz`). The folders are the shared
data's `anatomy/` (62 maps: WORD, BTCV, AMOS_0024) and `templates/` (AMOS_0013 and the two scored cases' maps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from training.shared_data import shared_data_dir

SPLITS = ("train", "val", "all")

# held out for validation: synthetic cases from these maps are scored, never trained on (3 WORD, 3 BTCV)
VALIDATION = ("WORD_0014", "WORD_0050", "WORD_0103", "BTCV_0001", "BTCV_0010", "BTCV_0030")
# the label maps of scored real cases (TSEX_0002, TSDCM_0001): in no split
SCORED = ("TSEX_0002", "TSDCM_0001")


def anatomy_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """The template folders of the shared data: [<root>/anatomy, <root>/templates] (root: the shared data folder,
    default $RUNET_SHARED_DATA, else ../shared/data)."""
    base = Path(root) if root is not None else shared_data_dir()
    return [base / "anatomy", base / "templates"]


def _matches(path: Path, names: Sequence[str]) -> bool:
    return any(path.name.startswith(n) for n in names)


def split_templates(paths: Sequence[Path], split: str) -> list[Path]:
    """The templates of `split`: 'train' (neither held out nor scored), 'val' (VALIDATION) or 'all' (every template
    but the scored cases' maps). ValueError for an unknown split or an empty result."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    usable = [p for p in paths if not _matches(p, SCORED)]
    if split == "train":
        kept = [p for p in usable if not _matches(p, VALIDATION)]
    elif split == "val":
        kept = [p for p in usable if _matches(p, VALIDATION)]
    else:
        kept = usable
    if not kept:
        raise ValueError(f"no template of split {split!r} among {[p.name for p in paths]}")
    return list(kept)
