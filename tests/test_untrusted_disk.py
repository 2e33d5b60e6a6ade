"""What is read from disk is checked before it is used: a checkpoint's values, the OpenVINO cache and the
precision choices kept in the user cache, and where that cache may lie."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_sha256sums
from inference.model import RUNet, UNetConfig
from inference.preprocess import Normalization

REPO = Path(__file__).resolve().parents[1]
TINY = UNetConfig(widths=(2, 4, 8))


def write_ct(path: Path, shape_zyx=(6, 20, 24)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path))


def predict_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "inference.predict", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


# --- the checkpoint's values ------------------------------------------------------------------------------------


def _save(path: Path, edit=None, normalization: Normalization | None = None) -> Path:
    """A tiny checkpoint at ``path``, its weights changed by ``edit(model)``, with SHA256SUMS written after."""
    torch.manual_seed(0)
    model = RUNet(TINY)
    path.parent.mkdir(parents=True, exist_ok=True)
    if edit is not None:
        with torch.no_grad():
            edit(model)
    save_checkpoint(path, model, normalization or Normalization())
    write_sha256sums(path.parent)
    return path


def test_a_diverged_checkpoint_is_refused_at_the_command_line(tmp_path):
    """All-NaN float weights (what a diverged run saves, its checksum written after) are exit 2 with one line,
    not a run that writes background everywhere."""
    weights = _save(tmp_path / "w" / "diverged.pt", lambda m: [p.fill_(float("nan")) for p in m.parameters()])
    first, tensor = next((k, t) for k, t in RUNet(TINY).state_dict().items() if t.is_floating_point())
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a_0000.nii.gz")
    result = predict_cli("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {weights}: weight {first} holds {tensor.numel()} NaN or Inf value(s) of {tensor.numel()}; refused "
        "(a diverged training run saves such weights)"
    ]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_first_non_finite_tensor_is_named(tmp_path):
    def one_inf(model: RUNet) -> None:
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
        bn.running_var[1] = float("inf")

    weights = _save(tmp_path / "inf.pt", one_inf)
    with pytest.raises(CheckpointError, match=r"inf\.pt: weight \S+running_var holds 1 NaN or Inf value\(s\) of 2;"):
        load_checkpoint(weights)


def test_a_non_finite_hu_window_is_refused(tmp_path):
    weights = _save(tmp_path / "norm.pt")
    payload = torch.load(weights, weights_only=True)
    payload["normalization"]["hu_max"] = float("nan")
    torch.save(payload, weights)
    write_sha256sums(tmp_path)
    with pytest.raises(CheckpointError, match=r"norm\.pt: malformed RUnet checkpoint \(need finite hu_min < hu_max"):
        load_checkpoint(weights)
