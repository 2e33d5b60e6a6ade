"""python -m inference.warm_cache: the OpenVINO conversion made ahead of the first case, found by predict's engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference import device, openvino_backend, openvino_cache, openvino_conversion
from inference.checkpoint import load_checkpoint
from inference.engine import Segmenter
from inference.warm_cache import main

pytestmark = pytest.mark.skipif(openvino_backend.import_openvino() is None, reason="openvino not installed")
REPO = Path(__file__).resolve().parents[1]


def _write_case(folder: Path) -> None:
    """One small random CT case, a_0000.nii.gz, in ``folder`` (made)."""
    folder.mkdir()
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 400, (6, 20, 24)).astype(np.int16))
    image.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(image, str(folder / "a_0000.nii.gz"))


def test_warm_cache_stores_the_conversion_that_the_engine_then_reads(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNET_CACHE_DIR", str(tmp_path))
    assert main(["--weights", str(tiny_weights)]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder.startswith(str(tmp_path / "openvino")) and (tmp_path / "openvino").is_dir()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the conversion")

    monkeypatch.setattr(openvino_conversion, "convert", no_conversion)
    seg = Segmenter(load_checkpoint(tiny_weights), torch.device("cpu"), backend="openvino")
    assert str(seg.openvino_cache_folder) == folder


def test_warm_cache_without_a_cache_folder_fails(tiny_weights, monkeypatch, capsys):
    monkeypatch.setenv("RUNET_CACHE_DIR", "off")
    assert main(["--weights", str(tiny_weights)]) == 1
    assert "could not be stored" in capsys.readouterr().err


def test_warm_cache_with_a_bad_checkpoint_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNET_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["--weights", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err


def test_a_warm_run_reads_the_checkpoint_from_its_record_with_identical_labels(tiny_weights, tmp_path, monkeypatch):
    """The first run on OpenVINO loads and converts the checkpoint and records it; the next reads its metadata and
    converted network from the cache without loading the weights, and writes the same bytes. A record that does
    not hold sends the run down the full path again."""
    from inference import engine, predict

    monkeypatch.setenv("RUNET_CACHE_DIR", str(tmp_path / "cache"))
    _write_case(tmp_path / "in")
    loads = []
    real_load = engine.load_checkpoint
    monkeypatch.setattr(engine, "load_checkpoint", lambda *a, **k: loads.append(1) or real_load(*a, **k))

    def run(out: str) -> bytes:
        argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / out), "--weights", str(tiny_weights)]
        assert predict.main([*argv, "--backend", "openvino", "--precision", "float32"]) == 0
        return (tmp_path / out / "a.nii.gz").read_bytes()

    first = run("full")
    (record,) = (tmp_path / "cache" / openvino_cache.CHECKPOINTS).iterdir()
    assert loads == [1]
    assert run("warm") == first and loads == [1]  # no weights loaded
    record.write_text(record.read_text().replace('"hu_max"', '"hu_maximum"'))  # its seal no longer holds
    assert run("repaired") == first and loads == [1, 1]
    assert run("warm again") == first and loads == [1, 1]


def test_a_warm_cpu_run_on_openvino_never_imports_torch(tiny_weights, tmp_path):
    """Two command-line runs with the default backend and precision on the CPU, sharing a user cache: the first
    loads and converts the checkpoint (torch loaded); the second, from the cache, never imports torch and writes
    the same bytes. ``--device auto`` where no GPU driver is loaded (the CPU without asking torch), else cpu."""
    _write_case(tmp_path / "in")
    code = (
        "import sys\n"
        "import inference.predict\n"
        "code = inference.predict.main(sys.argv[1:])\n"
        "print('torch' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "RUNET_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("RUNET_BACKEND", None)
    name = "cpu" if device.gpu_possible() else "auto"

    def run(out: str) -> tuple[bool, bytes]:
        argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / out), "--weights", str(tiny_weights), "--device", name]
        proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1] == "True", (tmp_path / out / "a.nii.gz").read_bytes()

    torch_first, first = run("cold")
    torch_warm, warm = run("warm")
    assert torch_first and not torch_warm
    assert warm == first
