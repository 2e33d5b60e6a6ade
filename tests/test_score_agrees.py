"""One scorer: training.score gives, with its defaults, the numbers that inference.predict followed by
evaluation.evaluate give, on TSEX_0002 (a 3 mm scan that runs at stride 1 under --stride auto)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from evaluation import evaluate
from inference import predict
from inference.checkpoint import DEFAULT_WEIGHTS
from inference.plan import PlanOptions
from training import score

CASE = "TSEX_0002"


def test_score_equals_predict_then_evaluate(shared_data, tmp_path: Path, capsys):
    images, labels, pair = tmp_path / "images", tmp_path / "labels", tmp_path / "pair"
    for folder in (images, labels, pair):
        folder.mkdir()
    shutil.copy(shared_data / f"{CASE}_0000.nii.gz", images)
    shutil.copy(shared_data / f"{CASE}.nii.gz", labels)
    for name in (f"{CASE}_0000.nii.gz", f"{CASE}.nii.gz"):
        shutil.copy(shared_data / name, pair)

    assert predict.main(["-i", str(images), "-o", str(tmp_path / "pred")]) == 0
    assert evaluate.main(["--gt", str(labels), "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "eval")]) == 0
    with open(tmp_path / "eval" / "metrics.csv", newline="") as f:
        cli = {r["organ"]: (float(r["DSC"]), float(r["NSD"])) for r in csv.DictReader(f)}

    scores = score.score_folder(DEFAULT_WEIGHTS, pair)[CASE]
    assert scores["stride"] == 1
    for organ, (dsc, nsd) in cli.items():  # the case holds all four organs
        assert scores[organ]["dsc"] == pytest.approx(dsc, abs=1e-9), organ
        assert scores[organ]["nsd"] == pytest.approx(nsd, abs=1e-9), organ
    assert cli["liver"][0] > 0.8  # the shipped weights find the liver at stride 1 ...
    fixed = score.score_folder(DEFAULT_WEIGHTS, pair, PlanOptions(stride=4))[CASE]
    assert fixed["stride"] == 4 and fixed["liver"]["dsc"] < 0.5  # ... and not at the paper's stride 4 (12 mm voxels)
    capsys.readouterr()
