"""training.score: the model-card scorer (inference pipeline + evaluation.metrics) on a tiny phantom folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

import inference.engine
from inference.engine_options import EngineOptions
from inference.plan import PlanOptions
from phantom.generate import write_dataset
from training import score


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("score_phantoms")
    write_dataset(out, 2, seed=3, size_xy=32, slices=16, spacing=(10.0, 10.0, 8.0), mode="phantom", generator_version=2)
    return out


def test_scores_every_case_and_writes_json(phantoms, tiny_weights, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert (
        score.main(
            [
                "--weights",
                str(tiny_weights),
                "--data",
                str(phantoms),
                "--stride",
                "1",
                "--window",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = json.loads(out.read_text())
    assert sorted(scores) == ["PHANTOM_0000", "PHANTOM_0001"]
    for case, row in scores.items():
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(phantoms / "labelsTr" / f"{case}.nii.gz")))
        organs = [o for o in ("liver", "kidney", "spleen", "pancreas") if o in row]
        assert organs == ["liver", "kidney", "spleen", "pancreas"]  # every phantom holds all four
        for label, organ in enumerate(organs, 1):
            assert row[organ]["gt_voxels"] == int((gt == label).sum()) > 0
            assert 0.0 <= row[organ]["dsc"] <= 1.0 and 0.0 <= row[organ]["nsd"] <= 1.0
    printed = capsys.readouterr().out
    assert printed.count("| PHANTOM_000") == 2 and "mean (cases with the organ)" in printed


def test_no_postprocess_scores_the_network_output(phantoms, tiny_weights, monkeypatch):
    """The component rule runs only when asked: replaced here by one that erases every label unless it is "none"."""
    monkeypatch.setattr(
        inference.engine,
        "postprocess",
        lambda labels, spacing, rule: labels.copy() if rule == "none" else np.zeros_like(labels),
    )
    post = score.score_folder(tiny_weights, phantoms, PlanOptions(stride=1, window=16))
    raw = score.score_folder(
        tiny_weights, phantoms, PlanOptions(stride=1, window=16), EngineOptions(postprocess="none")
    )
    organs = ("liver", "kidney", "spleen", "pancreas")
    assert all(row[o]["pred_voxels"] == 0 for row in post.values() for o in organs if o in row)
    assert sum(row[o]["pred_voxels"] for row in raw.values() for o in organs if o in row) > 0
