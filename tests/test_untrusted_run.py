"""A run trusts nothing it finds: a --log-csv that is a device or a FIFO, file names that are not UTF-8 or hold a
newline, another process writing into the same output folder, a signal at any moment of a write, an output without
any organ, images that are not CT, torchrun's variables half set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]


def write_ct(path: Path, shape_zyx=(6, 20, 24)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, os.fsencode(path).decode())


def predict_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "inference.predict", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


# --- the log file -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_log_csv_that_is_no_regular_file_is_a_usage_error(tiny_weights, tmp_path, kind):
    """/dev/full reads zeros without end and a FIFO blocks its reader: both are refused at once, in one line."""
    if kind == "device":
        log_csv, what = Path("/dev/full"), "a character device"
    else:
        log_csv, what = tmp_path / "log.csv", "a named pipe (FIFO)"
        os.mkfifo(log_csv)
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a_0000.nii.gz")
    args = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)]
    result = predict_cli(*args, "--log-csv", str(log_csv), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"python -m inference.predict: error: --log-csv {log_csv} is {what}, not a regular file; give a file name "
        "(see python -m inference.predict --help)"
    ]
    assert not (tmp_path / "out").exists()
