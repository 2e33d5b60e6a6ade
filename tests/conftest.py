"""Shared fixtures: the real CT cases of ../shared/data and tiny checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from training.shared_data import shared_data_dir

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
