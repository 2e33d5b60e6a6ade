"""What a user of the command lines meets: usage errors on one line with exit code 2, predict's -i and -o required,
--help with every default (predict, training.train), and logs without progress-bar debris when stderr is not a
terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference import predict
from training.config import HELP, option_fields
from training.config import parse_args as train_args

REPO = Path(__file__).resolve().parents[1]


def write_ct(path: Path, shape_zyx=(6, 20, 24)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    write_ct(folder / "a_0000.nii.gz")
    return folder


def usage_error(capsys, argv: list[str]) -> str:
    """Run the CLI in-process; assert exit code 2, nothing on stdout and one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        predict.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("python -m inference.predict: error: ") and lines[0].endswith("--help)")
    return lines[0]


def test_input_and_output_are_required(capsys, inputs, tmp_path):
    line = usage_error(capsys, [])
    assert "-i/--input" in line and "-o/--output" in line
    line = usage_error(capsys, ["-i", str(inputs)])
    assert "required: -o/--output" in line
    assert not (tmp_path / "workspace").exists()


def test_missing_weights_file(capsys, inputs, tmp_path):
    missing = tmp_path / "missing.pt"
    line = usage_error(capsys, ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(missing)])
    assert f"--weights {missing}: checkpoint file not found" in line and "RUNET_WEIGHTS" in line
    assert not (tmp_path / "out").exists()  # nothing is created before the usage is checked


def test_a_file_given_for_output_is_a_usage_error(capsys, inputs, tmp_path):
    image = inputs / "a_0000.nii.gz"
    line = usage_error(capsys, ["-i", str(inputs), "-o", str(image)])
    assert f"-o {image} is a file; -o takes a folder" in line


def test_cuda_without_a_gpu_is_a_usage_error(capsys, inputs, tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    line = usage_error(capsys, ["-i", str(inputs), "-o", str(tmp_path / "out"), "--device", "cuda"])
    assert "--device cuda: no CUDA device is available here; use --device cpu" in line
    assert not (tmp_path / "out").exists()


def test_dicom_output_of_an_image_file_is_a_usage_error(capsys, inputs, tmp_path):
    image = inputs / "a_0000.nii.gz"
    line = usage_error(capsys, ["-i", str(image), "-o", str(tmp_path / "out"), "--output-type", "dicom"])
    assert f"--output-type dicom: -i {image} is not a DICOM series" in line


def test_missing_input_folder(capsys, tmp_path):
    line = usage_error(capsys, ["-i", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert f"-i {tmp_path / 'nope'}: input folder or file does not exist" in line


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--phases", "8"], "argument --phases: invalid choice: 8"),
        (["--overlap", "1.5"], "--overlap must be in [0, 1), got 1.5"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--precision", "half"], "argument --precision: invalid choice: 'half'"),
        (["--stride", "3"], "argument --stride: invalid choice: '3'"),
        (["--nonsense"], "unrecognized arguments: --nonsense"),
    ],
)
def test_bad_options(capsys, inputs, tmp_path, extra, message):
    assert message in usage_error(capsys, ["-i", str(inputs), "-o", str(tmp_path / "out"), *extra])


def help_entries(text: str) -> dict[str, str]:
    """{long option: its help, whitespace collapsed} from argparse's --help text."""
    section = text.split("options:\n", 1)[1]
    entries = {}
    for block in re.split(r"\n(?=  -)", section):
        words = " ".join(block.split())
        entries[re.findall(r"--[a-z-]+", words)[0]] = words
    return entries


def test_help_lists_every_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--help"])
    assert exit_info.value.code == 0
    entries = help_entries(capsys.readouterr().out)
    expected = {
        "--device": "auto",
        "--phases": "all",
        "--overlap": "0.5",
        "--batch-size": "2",
        "--precision": "auto",
        "--short-volume": "fit",
        "--stride": "auto",
        "--postprocess": "anatomy",
    }
    for option, default in expected.items():
        assert entries[option].endswith(f"(default: {default})"), entries[option]
    assert re.search(r"\(default: \S+\.pt\)$", entries["--weights"])
    for option in ("--input", "--output", "--help"):  # required, or a flag: no default shown
        assert "default:" not in entries[option], entries[option]
    assert entries["--input"].startswith("-i IN, --input IN") and entries["--output"].startswith("-o DIR")


def test_logs_off_a_terminal_hold_no_bar(inputs, tiny_weights, tmp_path):
    """stderr to a pipe: only log lines, no carriage return, and a last line with the total and the mean time."""
    write_ct(inputs / "b_0000.nii.gz", shape_zyx=(20, 24, 20))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "inference.predict", "-i", str(inputs), "-o", str(tmp_path / "out")]
        + ["--weights", str(tiny_weights), "--device", "cpu"],
        capture_output=True,
        text=False,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert result.stdout == b"" and b"\r" not in result.stderr and "cases:" not in err
    lines = err.splitlines()
    assert lines[0].startswith("RUnet: 2 cases, device cpu")
    # auto measures on the first window; 1.5 mm voxels run at stride 2, whose 4 phases cap --phases 16 (one line)
    cases = [ln for ln in lines[1:-1] if not ln.startswith(("precision auto: ", "phases capped at "))]
    assert [ln.split(":")[0] for ln in cases] == ["a", "b"]
    assert re.fullmatch(
        rf"2 of 2 cases written to {re.escape(str(tmp_path / 'out'))} in \d+\.\d s, mean \d+\.\d\d s per case",
        lines[-1],
    )


def test_window_progress_counts_every_network_call():
    """predict_labels reports (windows done, windows in all) after each call: 4 phases x 4 z-windows, batches of 3."""
    import torch

    from inference.patching import predict_labels
    from inference.plan import PatchPlan

    calls = []
    volume = np.zeros((40, 8, 8), np.float32)
    plan = PatchPlan(stride=2, phases=4, window=16, overlap=0.5)  # windows at z 0, 8, 16, 24 -> 4 per phase

    def probs(x: torch.Tensor) -> torch.Tensor:
        return torch.ones((x.shape[0], 2, *x.shape[2:]))

    predict_labels(volume, probs, 2, plan, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 16), (6, 16), (9, 16), (12, 16), (15, 16), (16, 16)]


def test_train_help_describes_every_option_with_its_default(capsys):
    assert set(HELP) == {f.name for f in option_fields()}
    with pytest.raises(SystemExit) as exit_info:
        train_args(["--help"])
    assert exit_info.value.code == 0
    entries = help_entries(capsys.readouterr().out)
    assert set(entries) == {"--help"} | {"--" + f.name.replace("_", "-") for f in option_fields()}
    for text in entries.values():
        assert len(text.split()) >= 4, text  # the option, its metavar or flag, and a description
    shown = {"--epochs": "50", "--lr": "0.01", "--batch-size": "2", "--patch": "128 128 128", "--stride": "4"}
    shown |= {"--widths": "16 32 64 128 256", "--val-cases": "none", "--samples-per-epoch": "0", "--resume": "True"}
    for option, default in shown.items():
        assert entries[option].endswith(f"(default: {default})"), entries[option]
    for option in ("--data", "--cache", "--init"):  # required, or empty by default
        assert "default:" not in entries[option], entries[option]


def test_train_data_is_required_on_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_args([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "required: --data" in err
