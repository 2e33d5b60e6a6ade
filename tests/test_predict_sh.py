"""predict.sh checks its environment first: a missing interpreter, or one without the packages the CLI needs, is
one line on stderr with exit code 2, before anything is read or written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def predict_sh(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python, "INPUT_DIR": str(tmp_path / "in"), "OUTPUT_DIR": str(tmp_path / "out")}
    return subprocess.run(["sh", str(REPO / "predict.sh")], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_missing_interpreter(tmp_path):
    result = predict_sh(tmp_path, str(tmp_path / "nope"))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"predict.sh: no Python interpreter '{tmp_path / 'nope'}' (set PYTHON to the one that " \
        "has requirements.txt installed)\n"  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_interpreter_without_the_packages(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=300)
    python = str(tmp_path / "bare" / "bin" / "python")
    result = predict_sh(tmp_path, python)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"predict.sh: '{python}' lacks the packages torch SimpleITK ")
    assert f"pip install -r {REPO / 'requirements.txt'}" in lines[0]
    assert not (tmp_path / "out").exists()
