"""Smoke test of the speed benchmarks: each runs at a tiny size (--quick), prints and writes its table.

The numbers are not checked (the machine may be shared); the checks that the benchmarks make themselves are:
MONAI gives the same probabilities on the same windows, the scipy loop the same labels, and the CLI imports
nothing that the container does not need.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("bench_postprocess", "| ours | labels (zyx) | foreground voxels |"),
        ("bench_floor", "| network | backend | precision | variant |"),
        ("bench_stages", "| volume | backend | variant | precision | read (s) |"),
        ("bench_startup", "| event (one case, one process) |"),
        ("bench_tv", "| form | precision hint | s per batch | / plain softmax |"),
        ("bench_cohort", "| variant | wall s (each repeat) | best wall s | speed-up over one process |"),
        pytest.param(
            "bench_monai",
            "| volume | phases | z-windows per phase |",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("monai") is None, reason="monai not installed (requirements-bench.txt)"
            ),
        ),
    ],
)
def test_bench_quick(name, header, tmp_path, capsys):
    out = tmp_path / f"{name}.md"
    assert _load(name).main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert header in text
    assert text in capsys.readouterr().out + "\n"


def test_gpu_check_dry_run_on_the_cpu(tmp_path, capsys):
    module = _load("gpu_check")
    assert module.main(["--quick", "--device", "cpu", "--precisions", "float32", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "gpu_check.md").read_text()
    assert "| volume | precision | whole-process (s) | in-process (s) | network (s) |" in text
    assert (tmp_path / "gpu_check.json").exists()


def test_gpu_check_script_is_valid_shell():
    import subprocess

    assert subprocess.run(["bash", "-n", str(BENCH / "gpu_check.sh")], check=False).returncode == 0
