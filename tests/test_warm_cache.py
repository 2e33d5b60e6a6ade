"""python -m inference.warm_cache: the OpenVINO conversion made ahead of the first case, found by predict's engine."""

from __future__ import annotations

import pytest
import torch

from inference import openvino_backend
from inference.checkpoint import load_checkpoint
from inference.engine import Segmenter
from inference.warm_cache import main

pytestmark = pytest.mark.skipif(openvino_backend.import_openvino() is None, reason="openvino not installed")


def test_warm_cache_stores_the_conversion_that_the_engine_then_reads(tiny_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RUNET_CACHE_DIR", str(tmp_path))
    assert main(["--weights", str(tiny_weights)]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder.startswith(str(tmp_path / "openvino")) and (tmp_path / "openvino").is_dir()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds the conversion")

    monkeypatch.setattr(openvino_backend, "convert", no_conversion)
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
