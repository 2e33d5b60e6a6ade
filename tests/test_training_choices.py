"""Training's choices: which epoch best.pt holds, --max-steps, --val-max-cases, and the command line end to end.
Validation scores are scripted (training.train.validate / summarize replaced) so that the choice is known."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from inference.checkpoint import load_checkpoint
from training import train as train_module
from training.validate import summary_keys


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def scripted_validation(monkeypatch):
    """Replace validation by scripted mean DSCs; returns (the list to fill, the case names each call saw)."""
    script: list[float] = []
    seen: list[list[str]] = []

    def fake_validate(model, norm, cases, plan, device="cpu"):
        seen.append([c.name for c in cases])
        return {}

    def fake_summarize(scores):
        return dict.fromkeys(summary_keys(), 0.5) | {"dsc_mean": script.pop(0)}

    monkeypatch.setattr(train_module, "validate", fake_validate)
    monkeypatch.setattr(train_module, "summarize", fake_summarize)
    return script, seen


def test_best_checkpoint_is_the_epoch_of_the_best_validation(tmp_path, scripted_validation, tiny_train_config):
    script, seen = scripted_validation
    script.extend([0.3, 0.7, 0.5, 0.6])
    run = tmp_path / "run"
    kw = dict(epochs=4, samples_per_epoch=2, batch_size=2, val_every=1, val_cases=["PHANTOM_0001"])
    train_module.train(tiny_train_config(run, **kw))
    assert script == [] and seen == [["PHANTOM_0001"]] * 4
    best = load_checkpoint(run / "best.pt")
    assert best.training["epoch"] == 1 and best.training["best_dsc"] == 0.7 and best.training["step"] == 2
    last = load_checkpoint(run / "last.pt")
    assert last.training["epoch"] == 3 and last.training["best_dsc"] == 0.7
    assert [float(r["dsc_mean"]) for r in _rows(run / "log.csv")] == [0.3, 0.7, 0.5, 0.6]


def test_max_steps_stops_mid_epoch_and_validates_there(tmp_path, scripted_validation, tiny_train_config):
    script, seen = scripted_validation
    script.extend([0.4])
    run = tmp_path / "run"
    # 2 steps per epoch: step 3 is the first of epoch 2 (index 1); validation every 10 epochs, but the last one counts
    kw = dict(epochs=5, samples_per_epoch=4, batch_size=2, val_every=10, val_cases=["PHANTOM_0001"], max_steps=3)
    train_module.train(tiny_train_config(run, **kw))
    assert [int(r["step"]) for r in _rows(run / "steps.csv")] == [1, 2, 3]
    rows = _rows(run / "log.csv")
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(0, 2), (1, 3)]
    assert math.isnan(float(rows[0]["dsc_mean"])) and float(rows[1]["dsc_mean"]) == 0.4
    assert len(seen) == 1 and script == []
    assert load_checkpoint(run / "last.pt").training["step"] == 3


def test_val_max_cases_keeps_the_first_validation_cases(tmp_path, scripted_validation, tiny_train_config):
    script, seen = scripted_validation
    script.extend([0.1])
    run = tmp_path / "run"
    kw = dict(epochs=1, samples_per_epoch=1, batch_size=1, val_cases=["PHANTOM_0001", "PHANTOM_0002"], val_max_cases=1)
    train_module.train(tiny_train_config(run, **kw))
    assert seen == [["PHANTOM_0001"]]
    data = load_checkpoint(run / "last.pt").training["data"]
    assert data["val_cases"] == ["PHANTOM_0001"] and data["train_cases"] == ["PHANTOM_0000"]


def test_command_line_trains_end_to_end(train_phantoms, tmp_path):
    run = tmp_path / "run"
    args = ["--data", str(train_phantoms), "--out", str(run), "--cache", str(tmp_path / "cache"), "--widths", "4", "8"]
    args += ["--patch", "16", "32", "32", "--stride", "1", "--epochs", "2", "--samples-per-epoch", "2"]
    args += ["--batch-size", "1", "--workers", "0", "--threads", "1", "--val-cases", "PHANTOM_0002", "--seed", "3"]
    assert train_module.main(args) == 0
    assert sorted(p.name for p in run.iterdir()) == [
        "SHA256SUMS",
        "best.pt",
        "curves.png",
        "last.pt",
        "log.csv",
        "steps.csv",
    ]
    assert [int(r["step"]) for r in _rows(run / "steps.csv")] == [1, 2, 3, 4]
    rows = _rows(run / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert not math.isnan(float(rows[1]["dsc_mean"]))  # the last epoch is validated
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.config.widths == (4, 8) and ckpt.training["train_config"]["seed"] == 3
    assert ckpt.training["data"]["val_cases"] == ["PHANTOM_0002"]
