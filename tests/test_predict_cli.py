"""The inference CLI and predict.sh, run exactly as the container runs them (INPUT_DIR / OUTPUT_DIR)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from evaluation.labels_io import Grid
from inference.checkpoint import load_checkpoint
from inference.engine import Segmenter
from training.postprocess_rules import apply_rule

REPO = Path(__file__).resolve().parents[1]


def run_predict_sh(inputs: Path, outputs: Path, *args: str, weights: Path | None = None):
    env = {**os.environ, "INPUT_DIR": str(inputs), "OUTPUT_DIR": str(outputs), "PYTHON": sys.executable}
    if weights is not None:
        env["RUNET_WEIGHTS"] = str(weights)
    return subprocess.run(["sh", str(REPO / "predict.sh"), *args], env=env, capture_output=True, text=True, timeout=600)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_ct(path: Path, shape_zyx=(6, 20, 24), spacing=(1.5, 1.5, 3.0)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def check_output_matches_input(inp: Path, out: Path) -> np.ndarray:
    a, b = sitk.ReadImage(str(inp)), sitk.ReadImage(str(out))
    assert b.GetPixelID() == sitk.sitkUInt8
    for attr in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(b, attr)() == getattr(a, attr)(), attr
    labels = sitk.GetArrayFromImage(b)
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4}
    return labels


def test_end_to_end_on_real_cases(shared_data, tiny_weights, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    images = sorted(shared_data.glob("*_0000.nii.gz"))
    for img in images:
        shutil.copy(img, inputs)
    before = {p.name: sha256(p) for p in inputs.iterdir()}
    result = run_predict_sh(inputs, outputs, weights=tiny_weights)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # logs go to stderr
    raw = tmp_path / "raw"  # the same run without the largest-component step
    assert run_predict_sh(inputs, raw, "--postprocess", "none", weights=tiny_weights).returncode == 0
    assert {p.name: sha256(p) for p in inputs.iterdir()} == before
    manifest = json.loads((shared_data / "manifest.json").read_text())
    assert sorted(p.name for p in outputs.iterdir()) == sorted(f"{c}.nii.gz" for c in manifest["cases"])
    split: dict[int, int] = {}  # the most components of each label in a raw output
    for img in images:
        case = img.name.removesuffix("_0000.nii.gz")
        labels = check_output_matches_input(img, outputs / f"{case}.nii.gz")
        assert labels.shape == tuple(manifest["cases"][case]["array_shape_zyx"])
        raw_image = sitk.ReadImage(str(raw / f"{case}.nii.gz"))
        raw_labels = sitk.GetArrayFromImage(raw_image)
        expected = apply_rule(raw_labels, Grid.of(raw_image), "anatomy")  # run on the canonical array, as predict does
        np.testing.assert_array_equal(labels, expected)
        for label, most in {1: 1, 2: 3, 3: 1, 4: 1}.items():
            _, n = cc3d.connected_components(labels == label, connectivity=26, return_N=True)
            _, n_raw = cc3d.connected_components(raw_labels == label, connectivity=26, return_N=True)
            # the spleen may lose every component: none may lie below the liver
            assert n == min(n_raw, most) or (label == 3 and n == 0), (case, label, n, n_raw)
            split[label] = max(split.get(label, 0), n_raw)
        assert f"{case}: " in result.stderr
    assert any(split[label] > most for label, most in {1: 1, 2: 3, 3: 1, 4: 1}.items()), split  # something was cut


def test_shipped_weights_run_on_a_real_case(shared_data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(shared_data / "FLARE22C_0044_0000.nii.gz", inputs)
    result = run_predict_sh(inputs, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    check_output_matches_input(inputs / "FLARE22C_0044_0000.nii.gz", tmp_path / "out" / "FLARE22C_0044.nii.gz")


def _zero_spacing(path: Path) -> None:
    write_ct(path.with_suffix("").with_suffix(".tmp.nii"))
    raw = bytearray(path.with_suffix("").with_suffix(".tmp.nii").read_bytes())
    path.with_suffix("").with_suffix(".tmp.nii").unlink()
    raw[80:84] = struct.pack("<f", 0.0)
    path.write_bytes(gzip.compress(bytes(raw)))


def _nan_spacing(path: Path) -> None:
    _zero_spacing(path)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[84:88] = struct.pack("<f", float("nan"))
    path.write_bytes(gzip.compress(bytes(raw)))


def _truncated(path: Path) -> None:
    write_ct(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BAD_INPUTS = {
    "zero_bytes": (lambda p: p.write_bytes(b""), "empty file"),
    "corrupt": (lambda p: p.write_bytes(b"this is not a nifti file at all" * 20), "cannot read"),
    "truncated": (_truncated, "truncated or corrupt"),
    "image2d": (
        lambda p: sitk.WriteImage(sitk.Image([16, 16], sitk.sitkInt16), str(p)),
        "expected a 3D image",
    ),
    "image4d": (
        lambda p: sitk.WriteImage(sitk.Image([8, 8, 8, 2], sitk.sitkInt16), str(p)),
        "expected a 3D image",
    ),
    "vector": (lambda p: sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkVectorInt16, 3), str(p)), "scalar"),
    "zero_spacing": (_zero_spacing, "invalid voxel spacing"),
    "nan_spacing": (_nan_spacing, "invalid voxel spacing"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_fails_alone_with_one_line(kind, tiny_weights, tmp_path):
    make, message = BAD_INPUTS[kind]
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    write_ct(inputs / "good_0000.nii.gz")
    make(inputs / f"{kind}_0000.nii.gz")
    before = {p.name: sha256(p) for p in inputs.iterdir()}
    result = run_predict_sh(inputs, outputs, "--device", "cpu", weights=tiny_weights)
    assert result.returncode == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("failed: ")]
    assert len(lines) == 1 and f"{kind}_0000.nii.gz" in lines[0] and message in lines[0], result.stderr
    assert f"failed case: {kind}" in result.stderr
    assert sorted(p.name for p in outputs.iterdir()) == ["good.nii.gz"]  # nothing partial left behind
    assert {p.name: sha256(p) for p in inputs.iterdir()} == before


def test_other_files_are_skipped_with_a_note(tiny_weights, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    write_ct(inputs / "a_0000.nii.gz")
    write_ct(inputs / "b.nii.gz")
    (inputs / "notes.txt").write_text("hello")
    (inputs / "sub").mkdir()
    result = run_predict_sh(inputs, outputs, "-v", weights=tiny_weights)
    assert result.returncode == 0, result.stderr
    for name in ("b.nii.gz", "notes.txt", "sub"):
        assert f"skipping {inputs / name}" in result.stderr
    assert "3 files are not <case>_0000.nii.gz inputs and were skipped\n" in result.stderr
    assert [p.name for p in outputs.iterdir()] == ["a.nii.gz"]


def test_empty_input_folder(tiny_weights, tmp_path):
    (tmp_path / "in").mkdir()
    result = run_predict_sh(tmp_path / "in", tmp_path / "out", weights=tiny_weights)
    assert result.returncode == 1
    assert "no input images" in result.stderr and str(tmp_path / "in") in result.stderr


def test_missing_input_folder_is_a_usage_error(tiny_weights, tmp_path):
    result = run_predict_sh(tmp_path / "nope", tmp_path / "out", weights=tiny_weights)
    assert result.returncode == 2
    assert "does not exist" in result.stderr


@pytest.mark.parametrize(
    "where, code, message",
    [("under_a_file", 1, "cannot create output folder"), ("is_a_file", 2, "-o takes a folder")],
)
def test_output_folder_that_cannot_be_created(where, code, message, tiny_weights, tmp_path):
    """-o under a file fails when the run makes the folder (exit 1); -o naming a file is a usage error (exit 2)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_ct(inputs / "a_0000.nii.gz")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker / "out" if where == "under_a_file" else blocker
    result = run_predict_sh(inputs, out, weights=tiny_weights)
    assert result.returncode == code
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert blocker.read_text() == "x"


def test_bad_weights_and_usage(tmp_path, tiny_weights):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_ct(inputs / "a_0000.nii.gz")
    result = run_predict_sh(inputs, tmp_path / "out", weights=tmp_path / "missing.pt")
    assert result.returncode == 2 and "checkpoint file not found" in result.stderr
    result = run_predict_sh(inputs, tmp_path / "out", "--phases", "8", weights=tiny_weights)
    assert result.returncode == 2
    result = run_predict_sh(inputs, tmp_path / "out", "--overlap", "1.5", weights=tiny_weights)
    assert result.returncode == 2


def test_out_of_memory_backs_off_then_moves_to_cpu(tiny_weights, monkeypatch):
    seg = Segmenter(load_checkpoint(tiny_weights), torch.device("cpu"), batch_size=4, postprocess="none")
    seg.device = torch.device("cuda")  # pretend: the model stays on the CPU
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(seg.checkpoint.model, "to", lambda *a, **k: seg.checkpoint.model)
    calls = []

    def fake_predict_labels(x, fn, c, plan, batch_size, device, pad_value, progress=None, normalize=None):
        calls.append((batch_size, str(device)))
        if len(calls) < 4:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return np.zeros(x.shape, np.uint8)

    monkeypatch.setattr("inference.engine.predict_labels", fake_predict_labels)
    out = seg.segment(np.zeros((4, 8, 8), np.float32), (1.0, 1.0, 1.0))
    assert out.shape == (4, 8, 8)
    assert calls == [(4, "cuda"), (2, "cuda"), (1, "cuda"), (1, "cpu")]
