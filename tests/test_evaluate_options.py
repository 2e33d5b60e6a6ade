"""The scoring CLI on small constructed label maps: per-organ NSD tolerances and unreadable ground truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from evaluation.evaluate import main


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path))


def _boxes(shift: int) -> np.ndarray:
    """A liver box and a kidney box, both moved ``shift`` voxels (1 mm each) along x."""
    labels = np.zeros((20, 30, 40), np.uint8)
    labels[4:16, 5:15, 5 + shift : 17 + shift] = 1
    labels[4:16, 18:26, 20 + shift : 30 + shift] = 2
    return labels


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    _write(_boxes(0), gt / "a.nii.gz")
    _write(_boxes(3), pred / "a.nii.gz")  # every surface point within 3 mm of the other surface
    return gt, pred


def _nsd(out: Path) -> dict[str, float]:
    return {r["organ"]: float(r["NSD"]) for r in _read(out / "metrics.csv")}


def test_per_organ_tolerance(folders, tmp_path):
    gt, pred = folders
    args = ["--gt", str(gt), "--pred", str(pred), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one"), "--tolerance", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "five"), "--tolerance", "5"]) == 0
    mixed = "liver=5,kidney=1,spleen=1,pancreas=1"
    assert main([*args, "--out", str(tmp_path / "mixed"), "--tolerance", mixed]) == 0
    one, five, per_organ = _nsd(tmp_path / "one"), _nsd(tmp_path / "five"), _nsd(tmp_path / "mixed")
    assert five["liver"] == 1.0 and five["kidney"] == 1.0
    assert one["liver"] < 0.9 and one["kidney"] < 0.9
    assert per_organ["liver"] == five["liver"] and per_organ["kidney"] == one["kidney"]
    assert per_organ["spleen"] == per_organ["pancreas"] == 1.0  # absent from both
    # a per-organ tolerance must name every organ
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "bad"), "--tolerance", "liver=5"])
    assert exit_info.value.code == 2


def test_unreadable_ground_truth_is_an_error_and_not_scored(folders, tmp_path, capsys):
    gt, pred = folders
    (gt / "b.nii.gz").write_bytes(b"not a nifti file" * 10)
    _write(_boxes(0), pred / "b.nii.gz")
    out = tmp_path / "out"
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(out), "--no-progress"]) == 1
    problems = _read(out / "problems.csv")
    assert [(r["case"], r["status"]) for r in problems] == [("b", "gt_error")]
    assert problems[0]["message"].startswith("ground truth ") and "b.nii.gz" in problems[0]["message"]
    rows = [r for r in _read(out / "metrics.csv") if r["case"] == "b"]
    assert len(rows) == 4 and all(r["DSC"] == "" and r["NSD"] == "" and r["status"] == "gt_error" for r in rows)
    summary = {r["organ"]: r for r in _read(out / "summary.csv")}
    assert summary["liver"]["n"] == "1" and summary["overall"]["n"] == "4"  # case a only
    err = capsys.readouterr().err
    assert "error: b: ground truth" in err
