"""Each option of the inference CLI, checked by what it changes in the label maps: the CLI's output with an option
equals the engine's output configured with that option directly, and differs from the output without it."""

from __future__ import annotations

from pathlib import Path

import cc3d
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference.checkpoint import load_checkpoint
from inference.ct_io import read_ct
from inference.engine import Segmenter
from inference.plan import PlanOptions
from inference.postprocess import KEEP_COMPONENTS, keep_largest_components, postprocess
from inference.predict import main as predict
from phantom.generate import write_dataset


@pytest.fixture(autouse=True)
def torch_backend(monkeypatch):
    """These tests compare the CLI with the torch engine configured directly: the CLI runs on torch too (the
    OpenVINO backend's parity with torch is tests/test_backend.py's)."""
    monkeypatch.setenv("RUNET_BACKEND", "torch")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Two cases with the same 64 x 64 x 24 phantom voxels: 'coarse' with 3 mm voxels (``--stride auto`` picks 1
    for a checkpoint that saw 2.4-4 mm voxels) and 'fine' with 0.75 x 0.75 x 3 mm voxels (auto picks 4)."""
    folder = tmp_path_factory.mktemp("cli_phantom")
    write_dataset(
        folder,
        1,
        seed=5,
        mode="phantom",
        size_xy=64,
        slices=24,
        spacing=(3.0, 3.0, 3.0),
        flat=True,
        generator_version=2,
    )
    image = sitk.ReadImage(str(folder / "PHANTOM_0000_0000.nii.gz"))
    inputs = tmp_path_factory.mktemp("cli_inputs")
    sitk.WriteImage(image, str(inputs / "coarse_0000.nii.gz"))
    image.SetSpacing((0.75, 0.75, 3.0))
    sitk.WriteImage(image, str(inputs / "fine_0000.nii.gz"))
    return inputs


@pytest.fixture(scope="module")
def fine(inputs, tmp_path_factory) -> Path:
    """A folder holding the 'fine' case alone."""
    folder = tmp_path_factory.mktemp("cli_fine")
    (folder / "fine_0000.nii.gz").symlink_to(inputs / "fine_0000.nii.gz")
    return folder


def run_cli(inputs: Path, out: Path, *args: str, weights: Path) -> dict[str, np.ndarray]:
    """{case: label map (zyx, as written)} of one CLI run on the CPU."""
    code = predict(["-i", str(inputs), "-o", str(out), "--weights", str(weights), "--device", "cpu", *args])
    assert code == 0
    return {p.name.removesuffix(".nii.gz"): sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in out.iterdir()}


def engine_labels(image: Path, weights: Path, plan: dict | None = None, **segmenter) -> np.ndarray:
    """The label map (zyx, input orientation) of inference.engine.Segmenter configured directly: the CLI's
    defaults (every phase, overlap 0.5, batch 2, short volumes fit, stride auto, float32 here) unless given."""
    ckpt = load_checkpoint(weights)
    options = PlanOptions(**(plan or {}))
    kw = dict(batch_size=2, precision=torch.float32, postprocess="anatomy") | segmenter
    volume = read_ct(image)
    labels = Segmenter(ckpt, torch.device("cpu"), options, **kw).segment(volume.image, volume.spacing_zyx)
    return volume.orientation.from_canonical(labels)


def test_stride_auto_follows_the_spacing_and_a_fixed_stride_overrides_it(inputs, tiny_weights, tmp_path):
    args = ("--precision", "float32", "--postprocess", "none")
    auto = run_cli(inputs, tmp_path / "auto", *args, weights=tiny_weights)
    one = run_cli(inputs, tmp_path / "s1", *args, "--stride", "1", weights=tiny_weights)
    four = run_cli(inputs, tmp_path / "s4", *args, "--stride", "4", weights=tiny_weights)
    np.testing.assert_array_equal(auto["coarse"], one["coarse"])  # 2.4-4 mm voxels: stride 1
    np.testing.assert_array_equal(auto["fine"], four["fine"])  # 0.6-1 mm voxels: stride 4
    assert (auto["coarse"] != four["coarse"]).mean() > 0.01
    assert (auto["fine"] != one["fine"]).mean() > 0.01
    expected = engine_labels(inputs / "coarse_0000.nii.gz", tiny_weights, {"stride": 4}, postprocess="none")
    np.testing.assert_array_equal(four["coarse"], expected)


def test_short_volume_pad_and_fit(fine, tiny_weights, tmp_path):
    # 24 slices < one 128-slice window: fit runs one 32-slice window, pad replicates the edges to 128
    args = ("--precision", "float32", "--postprocess", "none")
    fit = run_cli(fine, tmp_path / "fit", *args, weights=tiny_weights)["fine"]
    pad = run_cli(fine, tmp_path / "pad", *args, "--short-volume", "pad", weights=tiny_weights)["fine"]
    image = fine / "fine_0000.nii.gz"
    np.testing.assert_array_equal(fit, engine_labels(image, tiny_weights, {"short_volume": "fit"}, postprocess="none"))
    np.testing.assert_array_equal(pad, engine_labels(image, tiny_weights, {"short_volume": "pad"}, postprocess="none"))
    assert (fit != pad).any()


def test_precision_is_the_one_asked_for(fine, tiny_weights, tmp_path):
    f32 = run_cli(fine, tmp_path / "f32", "--precision", "float32", "--postprocess", "none", weights=tiny_weights)[
        "fine"
    ]
    bf16 = run_cli(fine, tmp_path / "bf16", "--precision", "bfloat16", "--postprocess", "none", weights=tiny_weights)[
        "fine"
    ]
    image = fine / "fine_0000.nii.gz"
    np.testing.assert_array_equal(f32, engine_labels(image, tiny_weights, precision=torch.float32, postprocess="none"))
    np.testing.assert_array_equal(
        bf16, engine_labels(image, tiny_weights, precision=torch.bfloat16, postprocess="none")
    )
    assert (f32 != bf16).any()


def test_no_postprocess_writes_the_network_labels(fine, tiny_weights, tmp_path):
    # a random network: some of its organs come out in several components (the image is in canonical orientation)
    raw = run_cli(fine, tmp_path / "raw", "--postprocess", "none", weights=tiny_weights)["fine"]
    post = run_cli(fine, tmp_path / "post", "--postprocess", "flare", weights=tiny_weights)["fine"]
    default = run_cli(fine, tmp_path / "default", weights=tiny_weights)["fine"]
    np.testing.assert_array_equal(post, keep_largest_components(raw))
    spacing = read_ct(fine / "fine_0000.nii.gz").spacing_zyx
    np.testing.assert_array_equal(default, postprocess(raw, spacing, "anatomy"))
    counts = {}
    for label, keep in KEEP_COMPONENTS.items():
        _, n_raw = cc3d.connected_components(raw == label, connectivity=26, return_N=True)
        _, n_post = cc3d.connected_components(post == label, connectivity=26, return_N=True)
        assert n_post == min(n_raw, keep), (label, n_raw, n_post)
        counts[label] = n_raw
    assert any(counts[label] > keep for label, keep in KEEP_COMPONENTS.items()), counts


def test_phases(fine, tiny_weights, tmp_path):
    # 0.75 mm in-plane: stride 4, so 16, 4 and 1 phases all differ
    image = fine / "fine_0000.nii.gz"
    outs = {}
    for phases in (16, 4, 1):
        args = ("--phases", str(phases), "--batch-size", "3", "--precision", "float32", "--postprocess", "none")
        outs[phases] = run_cli(fine, tmp_path / f"p{phases}", *args, weights=tiny_weights)["fine"]
        expected = engine_labels(image, tiny_weights, {"phases": phases}, batch_size=3, postprocess="none")
        np.testing.assert_array_equal(outs[phases], expected)
    assert (outs[4] != outs[16]).any() and (outs[1] != outs[16]).any() and (outs[1] != outs[4]).any()


def test_overlap(tiny_weights, tmp_path):
    # 150 slices: z-windows starting at 0, 22 with overlap 0.5 and at 0, 11, 22 with overlap 0.9
    inputs = tmp_path / "in"
    inputs.mkdir()
    arr = np.random.default_rng(0).integers(-1000, 400, size=(150, 12, 12)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(img, str(inputs / "a_0000.nii.gz"))
    outs = {}
    for overlap in (0.5, 0.9):
        args = ("--phases", "1", "--overlap", str(overlap), "--precision", "float32", "--postprocess", "none")
        outs[overlap] = run_cli(inputs, tmp_path / f"o{overlap}", *args, weights=tiny_weights)["a"]
        plan = {"phases": 1, "overlap": overlap}
        expected = engine_labels(inputs / "a_0000.nii.gz", tiny_weights, plan, postprocess="none")
        np.testing.assert_array_equal(outs[overlap], expected)
    assert (outs[0.5] != outs[0.9]).any()


def test_batch_size_below_one_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for bad in ("0", "-1"):
        with pytest.raises(SystemExit) as info:
            predict(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--batch-size", bad])
        assert info.value.code == 2
        assert f"--batch-size must be >= 1, got {bad}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option,value,message",
    [("--device", "tpu", "unknown device 'tpu'"), ("--precision", "float64", "invalid choice: 'float64'")],
)
def test_unknown_device_or_precision_is_a_usage_error(option, value, message, tiny_weights, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    sitk.WriteImage(sitk.Image([8, 8, 8], sitk.sitkInt16), str(tmp_path / "in" / "a_0000.nii.gz"))
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), option, value]
    try:
        code = predict(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
