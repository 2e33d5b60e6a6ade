"""`pip install .` gives an importable package and console scripts that run from any folder: installed offline
into a temporary virtual environment that sees this environment's packages."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "inference", "evaluation", "niftiio", "training", "phantom", "weights")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a new virtual environment into which a copy of the sources was pip-installed (no
    download: this environment's packages, pip and setuptools included, are visible to it through a .pth file)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "outer_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", str(source)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return venv / "bin"


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RUNET_WEIGHTS")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_console_scripts_run_from_another_folder(installed, tmp_path):
    result = run([str(installed / "runet-evaluate"), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: runet-evaluate ") and "--gt" in result.stdout
    result = run([str(installed / "runet-evaluate"), "--gt", str(tmp_path)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("runet-evaluate: error: the following arguments are required: --pred, --out")
    for script in ("runet-predict", "runet-scorecard", "runet-figure", "runet-phantom", "runet-warm-cache"):
        assert (installed / script).is_file(), script


@pytest.mark.slow
def test_installed_package_is_imported_with_its_weights(installed, tmp_path):
    code = (
        "import inference, inference.checkpoint as c; print(inference.__file__); "
        "print(c.DEFAULT_WEIGHTS.is_file(), (c.DEFAULT_WEIGHTS.parent / 'SHA256SUMS').is_file())"
    )
    result = run([str(installed / "python"), "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    where, found = result.stdout.splitlines()
    assert not where.startswith(str(REPO)) and "site-packages" in where
    assert found == "True True"


@pytest.mark.slow
def test_installed_predict_segments_a_file_from_another_folder(installed, tmp_path):
    from inference.task import shared_data_dir

    case = shared_data_dir() / "TSEX_0002_0000.nii.gz"
    result = run([str(installed / "runet-predict"), "-i", str(case), "-o", "out", "--statistics"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "TSEX_0002.nii.gz").is_file()
    assert (tmp_path / "out" / "statistics" / "TSEX_0002.json").is_file()
    result = run([str(installed / "runet-predict"), "-i", str(case), "-o", str(case)], tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"runet-predict: error: -o {case} is a file")
