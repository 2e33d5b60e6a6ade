"""Smoke test of bench/bench_nsd.py at tiny sizes: it runs, writes its table, agrees with the reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("surface_distance")
pytestmark = pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_nsd.py"


def test_bench_nsd_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_nsd", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "nsd.md"
    assert module.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| masks | ours (s) | reference (s) |" in text
    assert "synthetic case, 4 organs" in text
    assert text in capsys.readouterr().out + "\n"
