"""Shared fixtures: the real CT cases of ../shared/data and tiny checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inference.task import shared_data_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _user_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted networks and measured precision choices go to a temporary folder, not the user's cache (the
    variable reaches the CLI processes that tests start too)."""
    os.environ["RUNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("user_cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "manifest.json").is_file():
        pytest.skip(f"real CT cases not found at {path} (set RUNET_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified checkpoint of a tiny random RUnet (widths 2..32): fast enough for end-to-end tests."""
    from inference.checkpoint import save_checkpoint, write_sha256sums
    from inference.model import RUNet, UNetConfig
    from inference.preprocess import Normalization

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = RUNet(UNetConfig(widths=(2, 4, 8, 16, 32)))
    save_checkpoint(folder / "tiny.pt", model, Normalization(), training={"init": "random, seed 0"})
    write_sha256sums(folder)
    return folder / "tiny.pt"


@pytest.fixture(scope="session")
def train_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 32 x 32 x 16 phantoms (10 x 10 x 8 mm voxels, axial orientations), nnU-Net layout: tiny training data."""
    from phantom.generate import write_dataset

    out = tmp_path_factory.mktemp("train_phantoms")
    write_dataset(out, 3, seed=0, size_xy=32, slices=16, spacing=(10.0, 10.0, 8.0), mode="phantom")
    return out


@pytest.fixture(scope="session")
def tiny_train_config(train_phantoms: Path):
    """make(out, **overrides) -> TrainConfig of a tiny network (widths 4..16, 16 x 32 x 32 patches at stride 1, no
    workers, one thread, no validation split) on train_phantoms, with its cache beside ``out``."""
    from training.config import TrainConfig

    tiny = dict(widths=(4, 8, 16), patch=(16, 32, 32), stride=1, workers=0, threads=1, lr=0.01, val_fraction=0.0)

    def make(out: Path, **kw) -> TrainConfig:
        where = {"data": str(train_phantoms), "out": str(out), "cache": str(out.parent / "cache")}
        return TrainConfig(**(tiny | where | kw))

    return make
