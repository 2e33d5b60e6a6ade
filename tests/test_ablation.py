import csv

import numpy as np
import pytest

from phantom.generate import write_dataset
from training.ablation import CaseOrgan, arm_options, main, merge_rows, read_rows, surface_to_volume, write_rows
from training.config import parse_args


def test_arm_options_build_each_head(tmp_path):
    base = ["--data", str(tmp_path)]
    unet, runet, fixed = (parse_args(base + arm_options(a)) for a in ("unet", "runet", "fixed-0.5"))
    assert not unet.regularized_softmax
    assert runet.regularized_softmax and runet.lam_learnable
    assert fixed.regularized_softmax and not fixed.lam_learnable and fixed.lam_init == 0.5
    assert runet.tv_iterations == 1
    it3 = parse_args(base + arm_options("runet-it3"))
    assert it3.regularized_softmax and it3.lam_learnable and it3.tv_iterations == 3
    for bad in ("softmax", "runet-itx", "runet-it"):
        with pytest.raises(ValueError, match="unknown arm"):
            arm_options(bad)
    with pytest.raises(ValueError, match="iteration"):
        arm_options("runet-it0")


def test_surface_to_volume_of_a_box_by_hand():
    mask = np.zeros((6, 7, 8), bool)
    mask[1:3, 1:4, 1:5] = True  # 2 x 3 x 4 voxels of 2 x 1 x 1 mm: a 4 x 3 x 4 mm box
    area = 2 * (4 * 3 + 4 * 4 + 3 * 4)  # mm^2
    assert surface_to_volume(mask, (2.0, 1.0, 1.0)) == pytest.approx(area / 48.0)
    assert np.isnan(surface_to_volume(np.zeros_like(mask), (1, 1, 1)))


def test_ablation_runs_end_to_end_at_a_tiny_size(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(data, 2, seed=0, size_xy=32, slices=16, spacing=(10.0, 10.0, 8.0), mode="phantom")
    shared = "--widths 4 8 --patch 16 32 32 --stride 1 --epochs 1 --samples-per-epoch 2 --batch-size 1"
    shared += " --val-fraction 0 --workers 0 --threads 1"
    argv = ["--data", str(data), "--heldout", str(data), "--out", str(tmp_path / "runs")]
    argv += ["--arms", "unet", "runet", "fixed-2", "--seeds", "0", "--infer-lams", "1", "--"] + shared.split()
    assert main(argv) == 0
    with open(tmp_path / "runs" / "ablation.csv") as f:
        rows = list(csv.DictReader(f))
    arms = {r["arm"] for r in rows}
    assert arms == {"unet", "runet", "fixed-2", "unet+layer-1"}
    assert all(int(r["components"]) >= 0 and 0.0 <= float(r["dsc"]) <= 1.0 for r in rows)
    assert {r["case"] for r in rows} == {"PHANTOM_0000", "PHANTOM_0001"}
    out = capsys.readouterr().out
    assert "| unet+layer-1 | 1 |" in out and "fixed-2 seed 0: lambda 2.0000" in out
    # --score-only trains nothing and scores the same checkpoints to the same numbers
    steps_before = (tmp_path / "runs" / "runet-s0" / "steps.csv").read_text()
    assert main(argv[: argv.index("--")] + ["--score-only"]) == 0
    with open(tmp_path / "runs" / "ablation.csv") as f:
        again = list(csv.DictReader(f))
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [drop(r) for r in again] == [drop(r) for r in rows]
    assert (tmp_path / "runs" / "runet-s0" / "steps.csv").read_text() == steps_before


def test_rows_of_earlier_invocations_are_kept(tmp_path):
    row = lambda arm, seed, dsc: CaseOrgan(arm, seed, "C", "liver", dsc, 0.5, 2, 0.1, 1.0)  # noqa: E731
    path = tmp_path / "ablation.csv"
    assert read_rows(path) == []
    write_rows([row("unet", 0, 0.9), row("runet", 0, 0.8)], path)
    assert read_rows(path) == [row("unet", 0, 0.9), row("runet", 0, 0.8)]  # types survive the round trip
    merged = merge_rows(read_rows(path), [row("runet", 0, 0.7), row("runet", 1, 0.6)])
    assert merged == [row("unet", 0, 0.9), row("runet", 0, 0.7), row("runet", 1, 0.6)]
