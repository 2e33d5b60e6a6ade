"""A run trusts nothing it finds: a --log-csv that is a device or a FIFO, file names that are not UTF-8 or hold a
newline, another process writing into the same output folder, a signal at any moment of a write, an output without
any organ, images that are not CT, torchrun's variables half set."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference.names import name_problem, shown

REPO = Path(__file__).resolve().parents[1]


def write_ct(path: Path, shape_zyx=(6, 20, 24)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path.parent / "tmp.nii.gz"))  # ITK cannot take every name: renamed by Python
    os.rename(path.parent / "tmp.nii.gz", path)


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


# --- names --------------------------------------------------------------------------------------------------------


def test_a_name_that_is_not_utf8_fails_alone_and_a_newline_stays_in_its_line(tiny_weights, tmp_path):
    """The image library aborts the process on a name that is not UTF-8 (even in the read-ahead thread): that case
    fails alone, shown escaped, and the cases around it are written; a newline in a name is escaped in every
    line and CSV row."""
    inputs, outputs, log_csv = tmp_path / "in", tmp_path / "out", tmp_path / "log.csv"
    inputs.mkdir()
    bad = inputs / os.fsdecode(b"b\xff\xfe_0000.nii.gz")
    for path in (inputs / "a_0000.nii.gz", bad, inputs / "c_0000.nii.gz", inputs / "new\nline_0000.nii.gz"):
        write_ct(path)
    args = ["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu"]
    result = predict_cli(*args, "--log-csv", str(log_csv))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr
    escaped = f"{inputs}/b\\xff\\xfe_0000.nii.gz"
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("failed")] == [
        f"failed: {escaped}: the name is not valid UTF-8, which the image library cannot open; rename it",
        "failed case(s): b\\xff\\xfe",
    ]
    assert any(ln.startswith("new\\nline: 24x20x6 voxels") for ln in result.stderr.splitlines())
    assert sorted(os.listdir(outputs)) == ["a.nii.gz", "c.nii.gz", "new\nline.nii.gz"]
    rows = log_csv.read_text().splitlines()
    assert len(rows) == 5
    assert [(r["case"], r["status"]) for r in csv.DictReader(rows)] == [
        ("a", "written"),
        ("b\\xff\\xfe", "failed"),
        ("c", "written"),
        ("new\\nline", "written"),
    ]


def test_names_are_shown_on_one_printable_line():
    assert shown("plain name_1.nii.gz") == "plain name_1.nii.gz"
    assert shown(os.fsdecode(b"a\xff\tb\x1b[31m\rc\nd")) == "a\\xff\\tb\\x1b[31m\\rc\\nd"
    assert (
        name_problem(os.fsdecode(b"x\xfe"))
        == "x\\xfe: the name is not valid UTF-8, which the image library cannot open; rename it"
    )
    assert name_problem("caf\u00e9") is None
