"""Efficiency runner: stable_max on constructed series, sampling with a fake GPU probe, and real runs of small
commands without a GPU."""

from __future__ import annotations

import csv
import json
import math
import sys

import pytest

from evaluation import efficiency
from evaluation.efficiency import area_mb_s, docker_command, run_command, stable_max

PY = sys.executable


def test_stable_max_ignores_rare_spikes():
    samples = [100] * 50 + [5000] + [800] * 49
    assert stable_max(samples) == 800
    assert max(samples) == 5000


def test_stable_max_needs_strictly_more_than_the_fraction():
    base = [10] * 95
    assert stable_max(base + [20] * 2 + [30] * 3) == 30  # 3 % > 2 %
    assert stable_max(base + [20] * 3 + [30] * 2) == 20  # 30 occurs exactly 2 %: not stable
    assert stable_max([7, 7, 3], min_fraction=0.5) == 7
    assert stable_max([7, 3, 3], min_fraction=0.5) == 3


def test_stable_max_short_and_degenerate_series():
    assert stable_max([42]) == 42  # one sample is 100 % of the series
    assert stable_max([1, 2, 3]) == 3  # each value is a third of a short series
    assert math.isnan(stable_max(list(range(100))))  # every value once in 100 samples: 1 % each
    with pytest.raises(ValueError, match="at least one"):
        stable_max([])
    with pytest.raises(ValueError, match="min_fraction"):
        stable_max([1], min_fraction=1.0)


def test_area_is_sum_times_interval():
    assert area_mb_s([100, 200, 300], 0.1) == pytest.approx(60.0)
    assert area_mb_s([], 0.1) == 0.0


def test_docker_command_is_the_organizers_form():
    cmd = docker_command("runet:latest").format(input="/in", output="/out", gpu=0)
    assert cmd == (
        'docker container run --gpus "device=0" --rm -v /in:/workspace/inputs -v /out:/workspace/outputs '
        'runet:latest /bin/bash -c "sh predict.sh"'
    )


def test_run_command_without_gpu_reports_time_and_rss(tmp_path, monkeypatch):
    def no_nvml(index):
        raise RuntimeError("NVML unavailable (test)")

    monkeypatch.setattr(efficiency, "NvmlMemory", no_nvml)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a_0000.nii.gz").write_bytes(b"x")
    script = (
        "import os, time; b = bytearray(64 << 20); time.sleep(0.4); "
        "names = os.listdir(os.environ['INPUT_DIR']); "
        "open(os.path.join('{output}', 'seen.txt'), 'w').write(','.join(names))"
    )
    record = run_command(f'{PY} -c "{script}"', tmp_path / "in", tmp_path / "out", case="a")
    assert record.returncode == 0
    assert 0.4 <= record.seconds < 10
    assert not record.gpu_available and record.samples_mb == []
    assert record.stable_max_mb is None and record.peak_mb is None and record.auc_mb_s is None
    assert record.peak_rss_mb >= 64  # the bytearray is resident
    assert len(record.rss_samples_mb) >= 3
    assert (tmp_path / "out" / "seen.txt").read_text() == "a_0000.nii.gz"


def test_run_command_samples_a_gpu_probe_every_interval(tmp_path):
    values = iter([1000.0] + [1000.0] * 3 + [3000.0] * 100)  # baseline, then a climb

    record = run_command(
        f'{PY} -c "import time; time.sleep(0.6)"',
        tmp_path / "in",
        tmp_path / "out",
        gpu_index=3,
        interval_s=0.05,
        read_gpu=lambda: next(values),
    )
    assert record.gpu_available and record.gpu_index == 3
    assert record.baseline_mb == 1000.0
    n = len(record.samples_mb)
    assert 8 <= n <= 40  # about 0.6 s / 0.05 s, on a busy machine
    assert record.peak_mb == 3000.0 and record.stable_max_mb == 3000.0
    assert record.auc_mb_s == pytest.approx(sum(record.samples_mb) * 0.05)
    assert len(record.sample_times_s) == n and record.sample_times_s == sorted(record.sample_times_s)


def test_run_command_timeout_kills_the_process_group(tmp_path):
    record = run_command(f"{PY} -c 'import time; time.sleep(30)'", tmp_path, tmp_path, timeout_s=0.5)
    assert record.returncode != 0 and record.seconds < 10


def test_cli_runs_each_case_alone(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for case in ("c1", "c2"):
        (images / f"{case}_0000.nii.gz").write_bytes(case.encode())
    (images / "readme.txt").write_text("not an image")
    script = (
        "import os, shutil, sys; names = os.listdir(sys.argv[1]); assert len(names) == 1, names; "
        "shutil.copy(os.path.join(sys.argv[1], names[0]), "
        "os.path.join(sys.argv[2], names[0].replace('_0000', '')))"
    )
    out = tmp_path / "out"
    rc = efficiency.main(
        ["--input", str(images), "--out", str(out), "--command", f'{PY} -c "{script}" {{input}} {{output}}']
        + ["--no-progress", "--interval", "0.05"]
    )
    assert rc == 0
    with open(out / "efficiency.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == ["c1", "c2"]
    assert all(r["returncode"] == "0" and float(r["seconds"]) > 0 and float(r["peak_rss_mb"]) >= 0 for r in rows)
    assert sorted(p.name for p in (out / "predictions").iterdir()) == ["c1.nii.gz", "c2.nii.gz"]
    assert (out / "predictions" / "c2.nii.gz").read_bytes() == b"c2"
    for case in ("c1", "c2"):
        assert (out / "memory" / f"{case}.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((out / "memory" / f"{case}.json").read_text())["case"] == case
    assert not (out / "work").exists()
    assert "readme.txt" in capsys.readouterr().err


def test_cli_reports_a_failing_command_and_a_missing_folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "c_0000.nii.gz").write_bytes(b"x")
    args = ["--input", str(images), "--out", str(tmp_path / "o"), "--no-progress", "--command", "exit 3"]
    assert efficiency.main(args) == 1
    assert efficiency.main(["--input", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--command", "true"]) == 2


def test_real_nvml_is_optional():
    """On this machine NVML may or may not exist; either way the probe opens or raises RuntimeError."""
    try:
        probe = efficiency.NvmlMemory(0)
    except RuntimeError as err:
        assert "NVML" in str(err) or "GPU index" in str(err)
    else:
        assert probe() >= 0
        probe.close()
