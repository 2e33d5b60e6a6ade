"""The training-state part of the checkpoint format (inference/checkpoint.py) and TrainConfig's nested configs:
a save/load round trip restores weights, optimizer, gradient scaler, RNG and progress; a checkpoint without that
state or a corrupt file is a CheckpointError naming it; the flat TrainConfig dict of older checkpoints (the shipped
weights') converts; the shipped weights load with their bytes unchanged."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from inference.checkpoint import DEFAULT_WEIGHTS, CheckpointError, load_checkpoint, save_checkpoint
from inference.model import RUNet, UNetConfig
from inference.preprocess import Normalization
from training.config import TrainConfig, option_fields, parse_args
from training.state import TrainingProgress, load_training_state, save_training_state

TINY = UNetConfig(widths=(2, 4), norm="instance")
PROGRESS = {"epoch": 3, "step": 17, "best_dsc": 0.625, "wall_s": 12.5}


def _trained(seed: int) -> tuple[RUNet, torch.optim.Optimizer, torch.amp.GradScaler]:
    """A tiny network after two Adam steps, its optimizer and an enabled-looking scaler state."""
    torch.manual_seed(seed)
    model = RUNet(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(1, 1, 4, 4, 4)).square().sum().backward()
        opt.step()
    return model, opt, torch.amp.GradScaler("cpu", enabled=False)


def test_training_state_round_trip(tmp_path):
    model, opt, scaler = _trained(seed=1)
    torch.manual_seed(123)
    save_training_state(tmp_path / "last.pt", model, Normalization(-100, 200), {"note": 1} | PROGRESS, opt, scaler)
    expected_draw = torch.rand(3)  # what the RNG gives right after the save

    fresh, fresh_opt, fresh_scaler = _trained(seed=2)
    torch.manual_seed(999)
    progress = load_training_state(tmp_path / "last.pt", fresh, fresh_opt, fresh_scaler)
    assert progress == TrainingProgress(epoch=3, step=17, best_dsc=0.625, wall_s=12.5)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    saved, loaded = opt.state_dict(), fresh_opt.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for k, state in saved["state"].items():
        assert all(torch.equal(state[n], loaded["state"][k][n]) for n in ("step", "exp_avg", "exp_avg_sq"))
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where the saved run was
    # the same file is an inference checkpoint holding the record, the progress and the resume part
    ckpt = load_checkpoint(tmp_path / "last.pt", verify=False)
    assert ckpt.normalization == Normalization(-100, 200) and ckpt.config == TINY
    assert {k: ckpt.training[k] for k in ("note", *PROGRESS)} == {"note": 1} | PROGRESS
    assert set(ckpt.training["resume"]) == {"optimizer", "scaler", "torch_rng"}


def test_a_fresh_runs_progress_is_minus_infinity_best(tmp_path):
    model, opt, scaler = _trained(seed=1)
    record = {"epoch": 0, "step": 1, "best_dsc": -math.inf, "wall_s": 0.0}
    save_training_state(tmp_path / "last.pt", model, Normalization(), record, opt, scaler)
    assert load_training_state(tmp_path / "last.pt", model, opt, scaler).best_dsc == -math.inf


def test_saving_without_the_progress_is_a_key_error(tmp_path):
    model, opt, scaler = _trained(seed=1)
    with pytest.raises(KeyError, match="best_dsc"):
        save_training_state(tmp_path / "last.pt", model, Normalization(), {"epoch": 0, "step": 1}, opt, scaler)
    assert not (tmp_path / "last.pt").exists()


def test_loading_what_holds_no_training_state_is_a_checkpoint_error(tmp_path):
    model, opt, scaler = _trained(seed=1)
    save_checkpoint(tmp_path / "best.pt", model, Normalization(), training=PROGRESS)
    with pytest.raises(CheckpointError, match=r"best\.pt: holds no training state"):
        load_training_state(tmp_path / "best.pt", model, opt, scaler)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt: cannot load checkpoint"):
        load_training_state(tmp_path / "bad.pt", model, opt, scaler)
    save_training_state(tmp_path / "last.pt", model, Normalization(), PROGRESS, opt, scaler)
    other = RUNet(UNetConfig(widths=(2, 8), norm="instance"))
    with pytest.raises(CheckpointError, match=r"last\.pt: malformed training state"):
        load_training_state(tmp_path / "last.pt", other, torch.optim.Adam(other.parameters()), scaler)


def test_shipped_weights_load_and_their_bytes_stay_as_listed():
    listed = (DEFAULT_WEIGHTS.parent / "SHA256SUMS").read_text().split()
    before = hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert listed == [before, DEFAULT_WEIGHTS.name]
    ckpt = load_checkpoint()  # its config still holds the unused "extra": {} of older versions
    assert "extra" in torch.load(DEFAULT_WEIGHTS, weights_only=True)["config"]
    assert ckpt.config.widths == (8, 16, 32, 64, 128) and not hasattr(ckpt.config, "extra")
    assert hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest() == before


def test_unet_config_drops_the_extra_entry_of_older_checkpoints():
    old = UNetConfig().to_dict() | {"extra": {}}
    assert UNetConfig.from_dict(old) == UNetConfig()
    assert "extra" not in UNetConfig().to_dict()


def test_the_shipped_weights_flat_train_config_converts():
    flat = torch.load(DEFAULT_WEIGHTS, weights_only=True)["training"]["train_config"]
    assert "widths" in flat and "network" not in flat  # written before TrainConfig nested its configs
    cfg = TrainConfig.from_dict(flat)
    assert cfg.network == UNetConfig(widths=(8, 16, 32, 64, 128), norm="batch", tv_step=1.0, lam_init=1.0)
    assert cfg.window == Normalization(-200.0, 300.0)
    assert cfg.patch == (32, 64, 64) and cfg.lr == 0.0001 and cfg.val_max_cases == 5
    assert cfg.dice == "paper" and cfg.lam_learnable is True  # options that file predates take their defaults
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_train_config_nests_the_network_and_the_window():
    flat = TrainConfig(widths=(4, 8), norm="instance", lam_init=0.3, hu_min=-100.0, patch=(8, 16, 16))
    nested = TrainConfig(
        network=UNetConfig(widths=(4, 8), norm="instance", lam_init=0.3),
        window=Normalization(hu_min=-100.0),
        patch=(8, 16, 16),
    )
    assert flat == nested
    assert flat.widths == (4, 8) and flat.lam_init == 0.3 and flat.hu_min == -100.0  # read flat, as the CLI names
    d = flat.to_dict()
    assert d["network"] == UNetConfig(widths=(4, 8), norm="instance", lam_init=0.3).to_dict()
    assert d["window"] == Normalization(hu_min=-100.0).to_dict() and "widths" not in d
    assert TrainConfig() == TrainConfig(network=UNetConfig(), window=Normalization())
    with pytest.raises(TypeError, match="unknown TrainConfig options: in_channels"):
        TrainConfig(in_channels=2)  # fixed by the task, not an option
    with pytest.raises(ValueError, match="widths"):
        TrainConfig(widths=(4,))
    with pytest.raises(AttributeError):
        _ = TrainConfig().no_such_option


def test_the_command_line_lists_the_nested_options_in_place(tmp_path):
    names = [f.name for f in option_fields()]
    assert names[:3] == ["data", "out", "cache"]
    assert names[3:13] == [
        "widths",
        "norm",
        "attention",
        "regularized_softmax",
        "tv_step",
        "lam_init",
        "lam_learnable",
        "tv_iterations",
        "hu_min",
        "hu_max",
    ]
    assert names[13] == "patch"
    cfg = parse_args(["--data", str(tmp_path), "--no-lam-learnable", "--hu-max", "400", "--tv-iterations", "2"])
    assert cfg.network == UNetConfig(lam_learnable=False, tv_iterations=2)
    assert cfg.window == Normalization(hu_max=400.0)
