"""The evaluator's blind spots: truncated or corrupt label maps, labels outside 0-4, --out on a file. Small
synthetic volumes; each test checks the exit code, the one stderr line and that no input byte changed."""

from __future__ import annotations

import csv
import gzip
import hashlib
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from evaluation.evaluate import main
from evaluation.labels_io import LabelReadError, read_labels
from niftiio.nifti_file import decode_fully, read_header

REPO = Path(__file__).resolve().parents[1]


def write_labels_file(path: Path, labels: np.ndarray) -> None:
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(path))


def organs(shape=(12, 40, 40)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[2:10, 5:25, 5:25] = 1
    labels[3:8, 28:36, 5:12] = 2
    labels[3:8, 28:36, 20:30] = 3
    labels[4:7, 10:14, 28:38] = 4
    return labels


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for case in ("A", "B"):
        write_labels_file(gt / f"{case}.nii.gz", organs())
        write_labels_file(pred / f"{case}.nii.gz", organs())
    return gt, pred


def snapshot(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.iterdir())}


def evaluate_cli(gt: Path, pred: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evaluation.evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]
        + ["--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def problems(out: Path) -> list[dict[str, str]]:
    with open(out / "problems.csv", newline="") as f:
        return list(csv.DictReader(f))


def metrics(out: Path, case: str) -> dict[str, tuple[float, float, str]]:
    with open(out / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["case"] == case]
    return {r["organ"]: (float(r["DSC"]), float(r["NSD"]), r["status"]) for r in rows}


def test_truncated_prediction_is_unreadable_and_scores_zero(folders, tmp_path):
    gt, pred = folders
    whole = (pred / "B.nii.gz").read_bytes()
    (pred / "B.nii.gz").write_bytes(whole[: len(whole) * 2 // 3])  # what `head -c` leaves
    before = snapshot(gt, pred)
    result = evaluate_cli(gt, pred, tmp_path / "out")
    assert result.returncode == 1, result.stderr  # scored (as zeros), as a missing prediction is, and a problem
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: B: {pred / 'B.nii.gz'}: truncated or corrupt file ("), (
        result.stderr
    )
    assert [(p["case"], p["status"]) for p in problems(tmp_path / "out")] == [("B", "unreadable")]
    assert set(metrics(tmp_path / "out", "B").values()) == {(0.0, 0.0, "unreadable")}
    assert set(metrics(tmp_path / "out", "A").values()) == {(1.0, 1.0, "ok")}
    assert snapshot(gt, pred) == before


def test_truncated_ground_truth_is_an_error(folders, tmp_path):
    gt, pred = folders
    whole = (gt / "A.nii.gz").read_bytes()
    (gt / "A.nii.gz").write_bytes(whole[:-9])
    result = evaluate_cli(gt, pred, tmp_path / "out")
    assert result.returncode == 1
    assert f"error: A: ground truth {gt / 'A.nii.gz'}: truncated or corrupt file (" in result.stderr
    assert [(p["case"], p["status"]) for p in problems(tmp_path / "out")] == [("A", "gt_error")]


def test_labels_outside_0_to_4_are_a_problem(folders, tmp_path):
    gt, pred = folders
    labels = organs()
    labels[0, 0, :7] = 9
    write_labels_file(pred / "A.nii.gz", labels)
    before = snapshot(gt, pred)
    result = evaluate_cli(gt, pred, tmp_path / "out")
    assert result.returncode == 1
    message = f"{pred / 'A.nii.gz'}: labels 9 (7 voxels) are not among 0-4; scored as background"
    assert result.stderr.strip().splitlines() == [f"error: A: {message}"]
    assert problems(tmp_path / "out") == [{"case": "A", "status": "unknown_labels", "message": message}]
    assert {v[2] for v in metrics(tmp_path / "out", "A").values()} == {"unknown_labels"}
    assert metrics(tmp_path / "out", "A")["liver"][:2] == (1.0, 1.0)  # the organs themselves are scored
    assert "1 scored with labels outside 0-4 (as background)" in result.stdout
    assert snapshot(gt, pred) == before


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_labels_are_not_integers(folders, tmp_path, value):
    """ITK reads NaN and Inf voxels as 0 (background): the file is listed as a problem, as 1.5 would be."""
    gt, pred = folders
    labels = organs().astype(np.float32)
    labels[5, 10, 10] = value  # inside the liver
    for folder, case in ((pred, "A"), (gt, "B")):
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(folder / f"{case}.nii.gz"))
    result = evaluate_cli(gt, pred, tmp_path / "out")
    assert result.returncode == 1, result.stderr
    not_integer = "labels must be integers, got 1 NaN or Inf voxel (float32)"
    assert problems(tmp_path / "out") == [
        {"case": "A", "status": "unreadable", "message": f"{pred / 'A.nii.gz'}: {not_integer}; scored 0"},
        {"case": "B", "status": "gt_error", "message": f"ground truth {gt / 'B.nii.gz'}: {not_integer}"},
    ]
    with pytest.raises(LabelReadError, match="NaN or Inf"):
        read_labels(pred / "A.nii.gz")


def test_out_on_a_file_is_one_line(folders, tmp_path):
    gt, pred = folders
    (tmp_path / "out").write_text("a file")
    result = evaluate_cli(gt, pred, tmp_path / "out")
    assert result.returncode == 2
    prog = "python -m evaluation.evaluate"
    assert result.stderr == f"{prog}: error: --out {tmp_path / 'out'} is a file, not a folder (see {prog} --help)\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "out" / "sub"), "--no-progress"])
    assert exit_info.value.code == 2


def test_full_read_check(tmp_path):
    path = tmp_path / "l.nii.gz"
    write_labels_file(path, organs())
    whole = path.read_bytes()
    raw = gzip.decompress(whole)
    header = read_header(path)
    assert decode_fully(path, header).problem is None
    # two gzip members (as `cat a.gz b.gz` makes) are one stream
    half = len(raw) // 2
    path.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))
    assert decode_fully(path, header).problem is None
    assert np.array_equal(read_labels(path)[0], organs())
    # a flipped CRC byte: the trailer's length still matches, only the full decode sees it
    broken = bytearray(whole)
    broken[-6] ^= 0xFF
    path.write_bytes(bytes(broken))
    assert "incorrect data check" in decode_fully(path, header).problem
    with pytest.raises(LabelReadError, match=r"l.nii.gz: corrupt file \(the gzip data breaks after"):
        read_labels(path)
    # a whole gzip stream of too few bytes
    path.write_bytes(gzip.compress(raw[:-100]))
    assert decode_fully(path, header).problem == (
        f"truncated or corrupt file (the header needs {len(raw)} bytes, the data holds {len(raw) - 100})"
    )
    # a stream cut short
    path.write_bytes(whole[: len(whole) // 2])
    assert decode_fully(path, header).problem.startswith("truncated or corrupt file (the gzip stream ends early, after")
    # not NIfTI: left to the image reader
    path.write_bytes(zlib.compress(raw))
    assert read_header(path) is None
