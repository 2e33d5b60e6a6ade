"""The scoring CLI's tables: an organ in neither file has status `absent` (scored 1 as FLARE does), metrics.csv says
whether the ground truth holds each organ, summary.csv and the printed table give FLARE's mean beside the count and
mean over the cases that hold the organ; no progress-bar debris when stderr is not a terminal."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from evaluation.evaluate import main

LIVER, KIDNEY, SPLEEN = 1, 2, 3


def write_labels(path: Path, boxes: dict[int, tuple[slice, slice, slice]]) -> None:
    arr = np.zeros((8, 10, 12), np.uint8)
    for label, box in boxes.items():
        arr[box] = label
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))


LIVER_BOX = (slice(1, 5), slice(1, 5), slice(1, 6))
SPLEEN_BOX = (slice(2, 6), slice(6, 9), slice(7, 11))


@pytest.fixture
def scored(tmp_path: Path, capsys) -> tuple[Path, str, str]:
    """c1: liver right, spleen missed; c2: liver right, a spleen predicted that the ground truth lacks; c3: no
    prediction. Kidney and pancreas are in no file. Returns (output folder, stdout, stderr)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    write_labels(gt / "c1.nii.gz", {LIVER: LIVER_BOX, SPLEEN: SPLEEN_BOX})
    write_labels(pred / "c1.nii.gz", {LIVER: LIVER_BOX})
    write_labels(gt / "c2.nii.gz", {LIVER: LIVER_BOX})
    write_labels(pred / "c2.nii.gz", {LIVER: LIVER_BOX, SPLEEN: SPLEEN_BOX})
    write_labels(gt / "c3.nii.gz", {LIVER: LIVER_BOX})
    out = tmp_path / "out"
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 1  # c3 missing
    captured = capsys.readouterr()
    return out, captured.out, captured.err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_metrics_csv_marks_absent_organs_and_ground_truth_presence(scored):
    out, _, _ = scored
    rows = {(r["case"], r["organ"]): r for r in read_csv(out / "metrics.csv")}
    got = {key: (r["DSC"], r["status"], r["in_gt"]) for key, r in rows.items()}
    assert got == {
        ("c1", "liver"): ("1.0", "ok", "1"),
        ("c1", "kidney"): ("1.0", "absent", "0"),
        ("c1", "spleen"): ("0.0", "ok", "1"),
        ("c1", "pancreas"): ("1.0", "absent", "0"),
        ("c2", "liver"): ("1.0", "ok", "1"),
        ("c2", "kidney"): ("1.0", "absent", "0"),
        ("c2", "spleen"): ("0.0", "ok", "0"),  # predicted, not in the ground truth: 0 as FLARE scores it
        ("c2", "pancreas"): ("1.0", "absent", "0"),
        ("c3", "liver"): ("0.0", "missing", "1"),
        ("c3", "kidney"): ("0.0", "missing", "0"),
        ("c3", "spleen"): ("0.0", "missing", "0"),
        ("c3", "pancreas"): ("0.0", "missing", "0"),
    }


def test_summary_keeps_flares_mean_and_adds_the_cases_with_the_organ(scored):
    out, _, _ = scored
    summary = {r["organ"]: r for r in read_csv(out / "summary.csv")}
    expected = {  # organ: (n, FLARE's DSC mean, n with the organ, DSC mean with the organ)
        "liver": (3, 2 / 3, 3, 2 / 3),
        "kidney": (3, 2 / 3, 0, math.nan),
        "spleen": (3, 0.0, 1, 0.0),
        "pancreas": (3, 2 / 3, 0, math.nan),
        "overall": (12, 6 / 12, 4, 2 / 4),
    }
    for organ, (n, mean, n_with, mean_with) in expected.items():
        row = summary[organ]
        assert int(row["n"]) == n and float(row["DSC_mean"]) == pytest.approx(mean, abs=1e-12), organ
        assert int(row["n_with_organ"]) == n_with, organ
        for metric in ("DSC", "NSD"):  # every score here is 0 or 1, so NSD equals DSC
            value = row[f"{metric}_mean_with_organ"]  # empty where no case holds the organ
            assert (value == "" and math.isnan(mean_with)) or float(value) == pytest.approx(mean_with), organ


def test_printed_table_shows_both_means(scored):
    _, printed, _ = scored
    lines = {ln.split()[0]: ln for ln in printed.splitlines() if ln.split() and ln.split()[0] in ("kidney", "overall")}
    flare, held = lines["kidney"].split(" | ")
    assert flare.split()[:3] == ["kidney", "3", "0.6667"] and held.split() == ["0", "-", "-"]
    flare, held = lines["overall"].split(" | ")
    assert flare.split()[:3] == ["overall", "12", "0.5000"] and held.split() == ["4", "0.5000", "0.5000"]
    assert "ground truth holds it" in printed


def test_no_bar_when_stderr_is_not_a_terminal(scored):
    _, printed, err = scored
    assert "\r" not in err and "scoring" not in err
    assert "\r" not in printed and printed.splitlines()[-1].startswith("3 cases: 2 scored, 1 scored 0")
