"""The words of the messages a user reads: counts that agree with their noun ("1 case", "2 cases", never "1 cases"
or "case(s)"), training's precision in words, the phases cap said only when --phases was given, "-" for a standard
deviation of one case, and efficiency's outputs named where they are."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from evaluation import efficiency
from evaluation.report import Row, format_summary, summarize, write_summary_csv
from inference.case_log import CaseRecord, summary_lines
from inference.checkpoint import Checkpoint, non_finite_weight
from inference.device import autocast_name
from inference.engine import Segmenter
from inference.model import RUNet, UNetConfig
from inference.plan import PlanOptions
from inference.predict import main as predict
from inference.preprocess import Normalization
from inference.runner import interrupted_message
from niftiio.wording import count, plural

# --- the helper ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "noun", "expected"),
    [
        (0, "case", "0 cases"),
        (1, "case", "1 case"),
        (2, "case", "2 cases"),
        (1, "label map", "1 label map"),
        (3, "label map", "3 label maps"),
        (1, "entry", "1 entry"),
        (2, "entry", "2 entries"),
        (2, "day", "2 days"),
        (2, "process", "2 processes"),
        (2, "box", "2 boxes"),
        (2, "epoch", "2 epochs"),
        (1234, "voxel", "1,234 voxels"),
        (1, "NaN or Inf value", "1 NaN or Inf value"),
    ],
)
def test_count_agrees_with_its_number(n, noun, expected):
    assert count(n, noun) == expected


def test_plural_alone_and_an_irregular_plural():
    assert (plural(1, "case"), plural(2, "case")) == ("case", "cases")
    assert (count(1, "child", "children"), count(2, "child", "children")) == ("1 child", "2 children")


# --- the messages ------------------------------------------------------------------------------------------------


def record(name: str, status: str) -> CaseRecord:
    return CaseRecord(name=name, status=status, seconds=1.0)


def test_the_summary_counts_one_case_and_names_one_failure(tmp_path):
    lines, ok = summary_lines([record("a", "written")], tmp_path, 1.0, 1)
    assert ok and lines[0].startswith(f"1 of 1 case written to {tmp_path} in 1.0 s")
    lines, ok = summary_lines([record("a", "written"), record("b", "failed")], tmp_path, 2.0, 1)
    assert not ok and lines[0].startswith("1 of 2 cases written") and lines[1] == "failed case: b"
    lines, _ = summary_lines([record("a", "failed"), record("b", "failed")], tmp_path, 2.0, 1)
    assert lines[1] == "failed cases: a, b"
    assert not any("(s)" in line for line in lines)


def test_the_interrupted_line_counts_the_cases(tmp_path):
    line = interrupted_message(2, tmp_path, 1, [], [])
    assert line == f"interrupted by SIGINT: 0 of 1 case written to {tmp_path}"


def test_a_non_finite_weight_is_counted_in_words():
    assert non_finite_weight({"w": torch.tensor([1.0, math.nan, 2.0])}) == "weight w holds 1 NaN or Inf value of 3"
    assert non_finite_weight({"w": torch.tensor([math.inf, math.nan])}) == "weight w holds 2 NaN or Inf values of 2"


def test_trainings_precision_in_words():
    assert autocast_name(None) == "float32"
    assert autocast_name(torch.bfloat16) == "bfloat16 autocast"
    assert autocast_name(torch.float16) == "float16 autocast"


def tiny_segmenter(phases: int | None) -> Segmenter:
    torch.manual_seed(0)
    model = RUNet(UNetConfig(widths=(4, 8))).eval()
    return Segmenter(Checkpoint(model, model.config, Normalization(), {}), torch.device("cpu"), PlanOptions(phases))


def test_the_phases_cap_is_said_only_when_phases_were_asked_for(capsys):
    default = tiny_segmenter(None)
    assert [default.plan_for((1.0, s, s)).phases for s in (0.8, 1.5, 3.0)] == [16, 4, 1]  # every phase of the stride
    assert capsys.readouterr().err == ""
    asked = tiny_segmenter(16)
    assert asked.plan_for((1.0, 3.0, 3.0)).phases == 1
    assert capsys.readouterr().err.splitlines() == [
        "phases capped at 1 for volumes split at stride 1 (1x1 phases; 16 asked for)"
    ]


def test_a_default_run_says_nothing_of_phases_it_was_not_asked_for(tiny_weights, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    array = np.random.default_rng(0).integers(-1000, 400, size=(6, 20, 24)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((3.0, 3.0, 3.0))  # stride 1: one phase
    sitk.WriteImage(image, str(inputs / "a_0000.nii.gz"))
    args = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--device", "cpu"]
    assert predict([*args, "--precision", "float32"]) == 0
    err = capsys.readouterr().err
    assert "capped" not in err and "(s)" not in err
    start = err.splitlines()[0]
    assert start.startswith("RUnet: 1 case, device cpu") and ", phases all, " in start
    assert f"1 of 1 case written to {tmp_path / 'out'}" in err


def test_a_standard_deviation_of_one_case_is_a_dash_and_an_empty_cell(tmp_path):
    rows = [Row("c1", "liver", 0.9, 0.8, "ok", True), Row("c1", "kidney", 1.0, 1.0, "absent", False)]
    summary = summarize(rows, ["liver", "kidney"])
    table = format_summary(summary)
    liver = next(line for line in table.splitlines() if line.startswith("liver"))
    assert liver.split()[:9] == ["liver", "1", "0.9000", "0.9000", "-", "0.8000", "0.8000", "-", "|"]
    kidney = next(line for line in table.splitlines() if line.startswith("kidney"))
    assert kidney.split(" | ")[1].split() == ["0", "-", "-"]  # no case holds it: no mean
    assert "nan" not in table
    write_summary_csv(summary, tmp_path / "summary.csv")
    with open(tmp_path / "summary.csv", newline="") as f:
        by_organ = {r["organ"]: r for r in csv.DictReader(f)}
    assert by_organ["liver"]["DSC_std"] == "" and float(by_organ["liver"]["DSC_mean"]) == 0.9
    assert by_organ["kidney"]["DSC_mean_with_organ"] == ""
    assert "nan" not in (tmp_path / "summary.csv").read_text()


def test_efficiency_names_where_the_outputs_are(tmp_path, capsys, monkeypatch):
    def no_nvml(index):
        raise RuntimeError("NVML unavailable (test)")

    monkeypatch.setattr(efficiency, "NvmlMemory", no_nvml)
    images = tmp_path / "images"
    images.mkdir()
    (images / "c1_0000.nii.gz").write_bytes(b"c1")
    out = tmp_path / "out"
    command = "cp {input}/c1_0000.nii.gz {output}/c1.nii.gz"
    assert efficiency.main(["--input", str(images), "--out", str(out), "--command", command, "--no-progress"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"the outputs in {out / 'predictions'}" in last and (out / "predictions" / "c1.nii.gz").is_file()
    assert not (out / "work").exists() and "removed" in last
    assert Path(out / "efficiency.csv").is_file()
