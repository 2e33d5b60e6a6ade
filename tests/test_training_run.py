"""The training loop end to end on tiny phantoms with a tiny network: loss goes down, the checkpoint works with the
inference CLI, a resumed run equals an uninterrupted one, and 2 gloo processes equal one process of twice the batch."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from inference.checkpoint import load_checkpoint
from inference.plan import PlanOptions
from training.config import TrainConfig, parse_args
from training.score import score_folder
from training.train import train


@pytest.fixture
def phantoms(train_phantoms) -> Path:
    return train_phantoms


def _step_rows(run: Path) -> list[dict]:
    with open(run / "steps.csv") as f:
        return list(csv.DictReader(f))


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in _step_rows(run)]


def test_steps_reduce_loss_and_checkpoint_runs_in_inference_cli(phantoms, tmp_path, tiny_train_config):
    run = tmp_path / "run"
    # one case, patch = the whole volume (16 slices, stride 1, 32 x 32): every step sees the same patch
    row = train(
        tiny_train_config(run, epochs=12, samples_per_epoch=2, val_every=6, val_cases=["PHANTOM_0001", "PHANTOM_0002"])
    )
    losses = _losses(run)
    assert len(losses) == 12 and losses[-1] < 0.96 * losses[0] and losses == sorted(losses, reverse=True)
    assert {"dsc_liver", "nsd_pancreas", "lam"} <= set(row)
    assert (run / "curves.png").is_file() and (run / "best.pt").is_file()
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    validated = [k for k, r in enumerate(rows) if r["dsc_liver"] != "nan"]
    assert validated == [5, 11]  # every 6th epoch
    assert all(0.0 <= float(rows[k][f"dsc_{o}"]) <= 1.0 for k in validated for o in ("liver", "pancreas"))
    # the last validation, recomputed from last.pt through the model-card scorer (read from the files, not the cache)
    rescored = score_folder(run / "last.pt", phantoms, PlanOptions(stride=1, window=16))
    for organ in ("liver", "kidney", "spleen", "pancreas"):
        expected = np.mean(
            [rescored[c][organ]["dsc"] if organ in rescored[c] else 1.0 for c in ("PHANTOM_0001", "PHANTOM_0002")]
        )
        assert row[f"dsc_{organ}"] == pytest.approx(expected, abs=1e-9), organ
    ckpt = load_checkpoint(run / "best.pt")  # verified against the run's SHA256SUMS
    assert ckpt.config.widths == (4, 8, 16) and ckpt.training["train_config"]["patch"] == [16, 32, 32]
    assert "resume" not in ckpt.training and "resume" in load_checkpoint(run / "last.pt").training
    assert ckpt.sampling.inplane_voxel_mm == (10.0, 10.0)  # stride 1: the phantoms' own 10 mm in-plane spacing

    from inference.predict import main as predict

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "PHANTOM_0001_0000.nii.gz").symlink_to(phantoms / "imagesTr" / "PHANTOM_0001_0000.nii.gz")
    assert predict(["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(run / "best.pt")]) == 0
    assert (tmp_path / "out" / "PHANTOM_0001.nii.gz").is_file()


def test_resume_equals_uninterrupted_run(phantoms, tmp_path, tiny_train_config):
    kw = dict(epochs=4, samples_per_epoch=4, batch_size=2, val_fraction=0.0)
    train(tiny_train_config(tmp_path / "straight", **kw))
    train(tiny_train_config(tmp_path / "resumed", **(kw | {"epochs": 2})))  # "interrupted" after epoch 2
    train(tiny_train_config(tmp_path / "resumed", **kw))  # continues from last.pt
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "straight")
    a = load_checkpoint(tmp_path / "straight" / "last.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "resumed" / "last.pt").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_starts_a_new_run_from_a_checkpoints_weights(phantoms, tmp_path, tiny_train_config):
    kw = dict(epochs=2, samples_per_epoch=2, batch_size=1, val_fraction=0.0)
    train(tiny_train_config(tmp_path / "a", **kw))
    src = tmp_path / "a" / "last.pt"
    train(tiny_train_config(tmp_path / "b", **(kw | {"epochs": 1, "lr": 1e-12, "init": str(src)})))
    # a new run: its own step count, fresh optimizer
    assert [int(r["step"]) for r in _step_rows(tmp_path / "b")] == [1, 2]
    a = dict(load_checkpoint(src, verify=False).model.named_parameters())
    b = dict(load_checkpoint(tmp_path / "b" / "last.pt", verify=False).model.named_parameters())
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # lr ~0: still the source's weights
    with pytest.raises(ValueError, match="last.pt: --init checkpoint has config") as refused:
        train(tiny_train_config(tmp_path / "c", **(kw | {"widths": (4, 8, 32), "init": str(src)})))
    widths = " ".join(map(str, tiny_train_config(tmp_path / "a").network.widths))
    assert str(refused.value).endswith(f"pass --widths {widths} to build the checkpoint's network")
    with pytest.raises(ValueError, match="pass --hu-min -200.0$"):
        train(tiny_train_config(tmp_path / "d", **(kw | {"hu_min": -100.0, "init": str(src)})))


def test_init_restarts_a_lambda_that_died_at_zero(tmp_path, tiny_train_config):
    kw = dict(epochs=1, samples_per_epoch=1, batch_size=1, val_fraction=0.0)
    train(tiny_train_config(tmp_path / "a", **kw))
    src = tmp_path / "a" / "last.pt"
    payload = torch.load(src, weights_only=True)
    payload["state_dict"].pop("activation.lam_raw")
    payload["state_dict"]["activation.lam"] = torch.tensor(-0.5)  # the clamped parametrization, dead at 0
    torch.save(payload, src)
    train(tiny_train_config(tmp_path / "b", **(kw | {"lr": 1e-12, "init": str(src)})))
    lam = load_checkpoint(tmp_path / "b" / "last.pt", verify=False).model.activation.lam_value
    assert lam == pytest.approx(TrainConfig().lam_init, rel=1e-4)


def test_init_carries_the_body_across_head_configs(tmp_path, tiny_train_config):
    kw = dict(epochs=1, samples_per_epoch=1, batch_size=1, val_fraction=0.0)
    train(tiny_train_config(tmp_path / "a", **(kw | {"regularized_softmax": False})))
    src = tmp_path / "a" / "last.pt"
    head = {"lr": 1e-12, "init": str(src), "lam_init": 0.3, "lam_learnable": False}
    train(tiny_train_config(tmp_path / "b", **(kw | head)))
    a = load_checkpoint(src, verify=False).model
    b = load_checkpoint(tmp_path / "b" / "last.pt", verify=False).model
    assert b.activation.lam_value == pytest.approx(0.3, rel=1e-5)  # the head as configured, not the source's
    body_a = dict(a.named_parameters())  # parameters: batch-norm statistics move in any training step
    body_b = {k: v for k, v in b.named_parameters() if not k.startswith("activation.")}
    assert body_a.keys() == body_b.keys()
    assert all(torch.allclose(body_a[k].float(), body_b[k].float(), atol=1e-6) for k in body_a)


def _worker(rank: int, world: int, port: int, cfg: TrainConfig) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    train(cfg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process_with_twice_the_batch(phantoms, tmp_path, tiny_train_config):
    # instance norm: batch norm would normalize with each process's own batch statistics (not the global batch's)
    kw = dict(epochs=2, samples_per_epoch=4, norm="instance", device="cpu")
    train(tiny_train_config(tmp_path / "one", batch_size=4, **kw))
    cfg = tiny_train_config(tmp_path / "two", batch_size=2, **kw)
    mp.start_processes(_worker, args=(2, _free_port(), cfg), nprocs=2, join=True, start_method="spawn")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 2
    assert two == pytest.approx(one, rel=1e-5, abs=1e-6)
    a = load_checkpoint(tmp_path / "one" / "last.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "two" / "last.pt").model.state_dict()
    # per tensor, not per element: Adam divides each element's step by its own gradient scale, so an element whose
    # gradient is ~0 in both runs can move by a rounding-sized amount differently (seen: 3e-6 in one of 128 weights)
    rel = {k: float((a[k] - b[k]).float().norm() / (a[k].float().norm() + 1e-12)) for k in a}
    assert max(rel.values()) < 1e-4, max(rel.items(), key=lambda kv: kv[1])


def test_command_line(tmp_path, phantoms):
    cfg = parse_args(["--data", str(phantoms), "--widths", "4", "8", "--patch", "8", "16", "16", "--no-attention"])
    assert cfg.widths == (4, 8) and cfg.patch == (8, 16, 16) and cfg.attention is False and cfg.lr == 0.01
    with pytest.raises(SystemExit):
        parse_args(["--data", str(phantoms), "--patch", "10", "16", "16"])  # not a multiple of 2 ** poolings
