"""The one planner: the checkpoint's Sampling, Segmenter.plan_for (the plan the CLI logs is the plan the engine
runs, a phases cap is one log line), Segmenter.segment on a plain array, one Segmenter per validation pass, and the
settings a Segmenter restores after an out-of-memory back-off."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference import engine
from inference.checkpoint import (
    DEFAULT_WEIGHTS,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    sha256_of,
    write_sha256sums,
)
from inference.engine import Segmenter
from inference.model import RUNet, UNetConfig
from inference.patching import predict_labels
from inference.plan import PatchPlan, PlanOptions, Sampling
from inference.postprocess import keep_largest_components
from inference.predict import main as predict
from inference.preprocess import Normalization
from training import validate as validate_module
from training.data import CachedCase

SHIPPED_SHA256 = "4171a68ab91e02f0c0839c205a057093b295fad6b88ce7e4199169a27d437262"


def tiny_checkpoint(sampling: Sampling = Sampling()) -> Checkpoint:
    """A random network of two levels (sizes multiples of 2), in memory."""
    torch.manual_seed(0)
    model = RUNet(UNetConfig(widths=(4, 8))).eval()
    return Checkpoint(model, model.config, Normalization(), {}, sampling=sampling)


def synthetic_ct(shape=(12, 20, 24), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 400, size=shape).astype(np.int16)


# --- Sampling in the checkpoint -------------------------------------------------------------------------------


def test_the_shipped_checkpoint_gets_its_sampling_from_its_training_record():
    assert sha256_of(DEFAULT_WEIGHTS) == SHIPPED_SHA256  # the file is read, never rewritten
    assert "sampling" not in torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    sampling = load_checkpoint().sampling
    assert sampling == Sampling((2.4000000953674316, 3.9964137077331543), 4, 128, 1, (32, 64, 64))


def test_sampling_round_trips_through_a_checkpoint(tmp_path):
    model = RUNet(UNetConfig(widths=(2, 4)))
    given = Sampling((1.5, 2.5), stride=4, window=64, train_stride=2, train_patch_zyx=(16, 32, 32))
    stale = {"inplane_voxel_mm": [9.0, 9.0]}  # the Sampling given wins over the record
    save_checkpoint(tmp_path / "given.pt", model, Normalization(), training=stale, sampling=given)
    # no Sampling given: the one the training record implies, written as an entry of its own
    record = {"inplane_voxel_mm": [3.0, 3.5], "train_config": {"stride": 1, "patch": [16, 32, 32]}}
    save_checkpoint(tmp_path / "implied.pt", model, Normalization(), training=record)
    write_sha256sums(tmp_path)
    assert load_checkpoint(tmp_path / "given.pt").sampling == given
    implied = torch.load(tmp_path / "implied.pt", weights_only=True)["sampling"]
    assert implied == {
        "inplane_voxel_mm": [3.0, 3.5],
        "stride": 4,
        "window": 128,
        "train_stride": 1,
        "train_patch_zyx": [16, 32, 32],
    }
    assert load_checkpoint(tmp_path / "implied.pt").sampling == Sampling((3.0, 3.5), 4, 128, 1, (16, 32, 32))


def test_a_malformed_sampling_entry_is_a_checkpoint_error(tmp_path):
    save_checkpoint(tmp_path / "m.pt", RUNet(UNetConfig(widths=(2, 4))), Normalization())
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["sampling"]["inplane_voxel_mm"] = [4.0, 2.0]
    torch.save(payload, tmp_path / "m.pt")
    write_sha256sums(tmp_path)
    with pytest.raises(CheckpointError, match=r"m\.pt: malformed RUnet checkpoint \(sampling: inplane_voxel_mm"):
        load_checkpoint(tmp_path / "m.pt")


@pytest.mark.parametrize(
    "kw",
    [
        {"inplane_voxel_mm": (0.0, 1.0)},
        {"inplane_voxel_mm": (1.0, float("inf"))},
        {"stride": 0},
        {"window": True},
        {"train_stride": 0},
        {"train_patch_zyx": (16, 32)},
    ],
)
def test_sampling_refuses_values_that_plan_nothing(kw):
    with pytest.raises(ValueError, match="sampling: "):
        Sampling(**kw)


# --- plan_for --------------------------------------------------------------------------------------------------


def test_plan_for_turns_options_and_sampling_into_the_plan():
    seg = Segmenter(tiny_checkpoint(Sampling((1.5, 2.5), window=32)), torch.device("cpu"), PlanOptions(overlap=0.25))
    # mean in-plane spacing 0.5 mm: 2.0 mm at stride 4; z spacing plays no part
    assert seg.plan_for((7.0, 0.5, 0.5)) == PatchPlan(4, 16, 32, 0.25, 2, "fit")
    assert seg.plan_for((1.0, 1.0, 1.0)) == PatchPlan(2, 4, 32, 0.25, 2, "fit")  # 2.0 mm at stride 2
    fixed = Segmenter(tiny_checkpoint(), torch.device("cpu"), PlanOptions(phases=4, stride=4, window=8))
    assert fixed.plan_for((1.0, 3.0, 3.0)) == PatchPlan(4, 4, 8, 0.5, 2, "fit")


def test_a_phases_cap_is_one_log_line_per_stride(capsys):
    seg = Segmenter(tiny_checkpoint(), torch.device("cpu"), PlanOptions(phases=16))
    assert seg.plan_for((1.0, 0.8, 0.8)).phases == 16
    assert capsys.readouterr().err == ""
    for _ in range(2):
        assert (seg.plan_for((1.0, 1.5, 1.5)).stride, seg.plan_for((1.0, 1.5, 1.5)).phases) == (2, 4)
        assert (seg.plan_for((1.0, 3.0, 3.0)).stride, seg.plan_for((1.0, 3.0, 3.0)).phases) == (1, 1)
    assert capsys.readouterr().err.splitlines() == [
        "phases capped at 4 for volumes split at stride 2 (2x2 phases; 16 asked for)",
        "phases capped at 1 for volumes split at stride 1 (1x1 phases; 16 asked for)",
    ]


def test_options_the_network_cannot_take_fail_when_the_segmenter_is_built():
    with pytest.raises(ValueError, match="window 9 must be a positive multiple of 2"):
        Segmenter(tiny_checkpoint(), torch.device("cpu"), PlanOptions(window=9))
    with pytest.raises(TypeError, match="options must be a PlanOptions"):
        Segmenter(tiny_checkpoint(), torch.device("cpu"), PatchPlan())
    for bad in ({"stride": "4"}, {"stride": 0}, {"phases": 0}, {"overlap": 1.0}, {"short_volume": "crop"}):
        with pytest.raises(ValueError):
            PlanOptions(**bad)


def test_the_cli_logs_records_and_runs_the_one_plan(tiny_weights, tmp_path, monkeypatch, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = sitk.GetImageFromArray(synthetic_ct((6, 20, 24)))
    image.SetSpacing((1.5, 1.5, 3.0))  # stride 2 for the shipped range: 16 phases capped at 4
    sitk.WriteImage(image, str(inputs / "a_0000.nii.gz"))
    planned, ran = [], []
    real_plan_for, real_predict_labels = Segmenter.plan_for, engine.predict_labels

    def plan_for(self, spacing_zyx):
        planned.append(real_plan_for(self, spacing_zyx))
        return planned[-1]

    def spy(x, fn, c, plan, *args, **kwargs):
        ran.append(plan)
        return real_predict_labels(x, fn, c, plan, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "plan_for", plan_for)
    monkeypatch.setattr(engine, "predict_labels", spy)
    args = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--device", "cpu"]
    assert predict([*args, "--phases", "16", "--precision", "float32", "--log-csv", str(tmp_path / "cases.csv")]) == 0
    # the plan logged and recorded is the object the engine ran (segment re-plans only to check it is its own)
    assert ran and all(plan is planned[0] for plan in ran) and all(plan == planned[0] for plan in planned)
    assert (planned[0].stride, planned[0].phases) == (2, 4)
    err = capsys.readouterr().err.splitlines()
    assert "phases capped at 4 for volumes split at stride 2 (2x2 phases; 16 asked for)" in err
    assert any(line.startswith("a: 24x20x6 voxels (canonical xyz), stride 2, ") for line in err)
    with open(tmp_path / "cases.csv") as f:
        row = next(csv.DictReader(f))
    assert (row["stride"], row["phases"]) == ("2", "4")


# --- segment ---------------------------------------------------------------------------------------------------


def test_segment_is_normalization_plan_network_and_postprocessing():
    ckpt = tiny_checkpoint()
    image = synthetic_ct()
    before = image.copy()
    seg = Segmenter(ckpt, torch.device("cpu"), PlanOptions(window=8), fuse=False, channels_last=False)
    labels = seg.segment(image, (2.0, 1.5, 1.5))
    assert labels.dtype == np.uint8 and labels.shape == image.shape
    np.testing.assert_array_equal(image, before)  # the input is not modified
    plan = PatchPlan(stride=2, phases=4, window=8, size_multiple=2)
    with torch.inference_mode():
        raw = predict_labels(Normalization().apply(image), ckpt.model, 5, plan, batch_size=2, pad_value=-1.0)
    np.testing.assert_array_equal(labels, keep_largest_components(raw))
    float_labels = seg.segment(image.astype(np.float32), np.array([2.0, 1.5, 1.5]), plan=seg.plan_for((2, 1.5, 1.5)))
    np.testing.assert_array_equal(float_labels, labels)


@pytest.mark.parametrize(
    "image,spacing,problem",
    [
        (np.zeros((4, 8)), (1.0, 1.0, 1.0), "non-empty \\(D, H, W\\) numpy array"),
        (np.zeros((0, 8, 8)), (1.0, 1.0, 1.0), "non-empty"),
        ([[[0.0]]], (1.0, 1.0, 1.0), "numpy array of HU, got list"),
        (np.zeros((4, 8, 8), bool), (1.0, 1.0, 1.0), "dtype bool"),
        (np.zeros((4, 8, 8), np.complex64), (1.0, 1.0, 1.0), "dtype complex64"),
        (np.zeros((4, 8, 8)), (1.0, 0.0, 1.0), "spacing must be three finite values > 0"),
        (np.zeros((4, 8, 8)), (1.0, 1.0), "spacing must be three"),
        (np.zeros((4, 8, 8)), (1.0, float("nan"), 1.0), "spacing must be three"),
    ],
)
def test_segment_refuses_what_is_not_a_ct_array(image, spacing, problem):
    with pytest.raises(ValueError, match=problem):
        Segmenter(tiny_checkpoint(), torch.device("cpu")).segment(image, spacing)


def test_segment_refuses_a_plan_of_another_spacing():
    seg = Segmenter(tiny_checkpoint(), torch.device("cpu"), PlanOptions(window=8))
    with pytest.raises(ValueError, match="is not this segmenter's plan"):
        seg.segment(synthetic_ct(), (1.0, 0.8, 0.8), plan=seg.plan_for((1.0, 3.0, 3.0)))


# --- validation ------------------------------------------------------------------------------------------------


def test_validation_builds_one_segmenter_per_pass_with_the_training_cut(monkeypatch):
    built = []

    class Counting(Segmenter):
        def __post_init__(self) -> None:
            built.append(self)
            super().__post_init__()

    monkeypatch.setattr(validate_module, "Segmenter", Counting)
    model = tiny_checkpoint().model
    sampling = Sampling((3.0, 3.0), train_stride=2, train_patch_zyx=(8, 16, 16))
    cases = [
        CachedCase(f"c{k}", synthetic_ct(seed=k), np.zeros((12, 20, 24), np.uint8), (2.0, 1.5, 1.5)) for k in range(3)
    ]
    scores = validate_module.validate(model, Normalization(), cases, sampling)
    assert list(scores) == ["c0", "c1", "c2"] and len(built) == 1
    # every phase of the training stride, windows of the patch depth: whatever the spacing
    assert built[0].plan_for((2.0, 0.7, 0.7)) == PatchPlan(stride=2, phases=4, window=8, size_multiple=2)
    with pytest.raises(ValueError, match="validation needs the training stride and patch"):
        validate_module.validation_options(Sampling())


# --- out-of-memory back-off ------------------------------------------------------------------------------------


@pytest.fixture
def pretend_cuda(monkeypatch):
    """A Segmenter built for "cuda" without a GPU: placing the network only records the device."""
    placed: list[str] = []
    monkeypatch.setattr(Segmenter, "_place_network", lambda self: placed.append(str(self.device)))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seg = Segmenter(tiny_checkpoint(), torch.device("cuda"), batch_size=4, precision=torch.bfloat16, postprocess="none")
    return seg, placed


def test_after_an_out_of_memory_back_off_the_next_case_starts_from_the_settings(pretend_cuda, monkeypatch, capsys):
    seg, placed = pretend_cuda
    calls = []

    def fake_predict_labels(x, fn, c, plan, batch_size, device, pad_value, progress=None, normalize=None):
        calls.append((batch_size, str(device), engine.precision_name(seg.precision)))
        if len(calls) < 4:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return np.zeros(x.shape, np.uint8)

    monkeypatch.setattr(engine, "predict_labels", fake_predict_labels)
    seg.segment(np.zeros((4, 8, 8), np.int16), (1.0, 1.0, 1.0))
    assert calls == [(4, "cuda", "bfloat16"), (2, "cuda", "bfloat16"), (1, "cuda", "bfloat16"), (1, "cpu", "float32")]
    assert (seg.batch_size, str(seg.device), seg.precision) == (4, "cuda", torch.bfloat16)
    assert placed == ["cuda", "cpu", "cuda"]
    assert capsys.readouterr().err.splitlines()[-1] == (
        "out-of-memory back-off undone for the next case: batch size 4, device cuda, precision bfloat16"
    )
    seg.segment(np.zeros((4, 8, 8), np.int16), (1.0, 1.0, 1.0))
    assert calls[4:] == [(4, "cuda", "bfloat16")]
    assert capsys.readouterr().err == ""  # nothing backed off, nothing to undo


def test_a_case_that_fails_after_backing_off_still_restores_the_settings(pretend_cuda, monkeypatch):
    seg, placed = pretend_cuda

    def always_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(engine, "predict_labels", always_out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        seg.segment(np.zeros((4, 8, 8), np.int16), (1.0, 1.0, 1.0))
    assert (seg.batch_size, str(seg.device), seg.precision) == (4, "cuda", torch.bfloat16)
    assert placed == ["cuda", "cpu", "cuda"]
