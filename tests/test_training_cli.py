"""What a user of training.train meets: a finished run says there is nothing to do, logs off a terminal hold no
progress bar, and the curves' epoch axis ticks on whole epochs (its --help: tests/test_cli_usage.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from phantom.generate import write_dataset
from training.config import TrainConfig
from training.logs import curves_figure
from training.train import train


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    write_dataset(out, 2, seed=0, size_xy=32, slices=16, spacing=(10.0, 10.0, 8.0), mode="phantom")
    return out


def test_finished_run_has_nothing_to_do_and_logs_hold_no_bar(phantoms, tmp_path, capsys):
    cfg = TrainConfig(
        data=str(phantoms),
        out=str(tmp_path / "run"),
        widths=(4, 8, 16),
        patch=(16, 32, 32),
        stride=1,
        workers=0,
        threads=1,
        val_fraction=0.0,
        epochs=2,
    )
    assert train(cfg)  # the last epoch's row
    err = capsys.readouterr().err
    assert "\r" not in err and "epoch 1/2" not in err  # stderr is not a terminal here: no bar
    lines = err.splitlines()
    assert [ln.split(":")[0] for ln in lines[1:3]] == ["epoch 1", "epoch 2"]
    assert lines[-1].startswith("done: 2 epochs in ") and "s per epoch" in lines[-1]
    log_csv = (tmp_path / "run" / "log.csv").read_text()

    assert train(cfg) == {}
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"nothing to do: 2 epochs already done (2 steps) in {tmp_path / 'run'}; pass a larger --epochs (now 2) to "
        "train on, or --no-resume to start over"
    ]
    assert (tmp_path / "run" / "log.csv").read_text() == log_csv

    with open(tmp_path / "run" / "log.csv", newline="") as f:
        fig = curves_figure(list(csv.DictReader(f)))
    for ax in fig.axes[:2]:  # loss and lambda (no validation in this run: the DSC and NSD panels are empty)
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert list(fig.axes[0].lines[0].get_xdata()) == [1, 2]  # epochs as the log prints them
