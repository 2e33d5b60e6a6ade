"""Efficiency runner: stable_max on constructed series, sampling with a fake GPU probe, and real runs of small
commands without a GPU."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
import types

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


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_run_command_timeout_kills_the_process_group(tmp_path):
    # the shell starts a child of its own and waits: killing only the shell would leave the child running
    pid_file = tmp_path / "child.pid"
    record = run_command(f"sleep 30 & echo $! > {pid_file}; wait", tmp_path, tmp_path, timeout_s=1.0)
    assert record.returncode == -9 and record.seconds < 10
    child = int(pid_file.read_text())
    for _ in range(50):  # the kill is asynchronous: give it up to 5 s
        if not _alive(child):
            break
        time.sleep(0.1)
    alive = _alive(child)
    if alive:
        os.kill(child, 9)
    assert not alive, "the command's child outlived the timeout"


def test_cli_runs_each_case_alone(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for case in ("c1", "c2"):
        (images / f"{case}_0000.nii.gz").write_bytes(case.encode())
    (images / "readme.txt").write_text("not an image")
    script = (
        "import os, shutil, sys, time; b = bytearray(48 << 20); time.sleep(0.3); "
        "names = os.listdir(sys.argv[1]); assert len(names) == 1, names; "
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
    for r in rows:  # each case held a 48 MiB buffer for 0.3 s: sampled every 0.05 s, its resident size is seen
        assert r["returncode"] == "0" and 0.3 <= float(r["seconds"]) < 30 and 48 <= float(r["peak_rss_mb"]) < 1000
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


def test_nvml_missing_raises_runtime_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with pytest.raises(RuntimeError, match=r"NVML unavailable \(ModuleNotFoundError"):
        efficiency.NvmlMemory(0)


class _FakeNvml(types.ModuleType):
    """pynvml with one GPU of 8 GiB, 3 GiB + 0.5 MiB of it used."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.calls: list[str] = []

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetName(self, handle):
        return "Fake GPU"

    def nvmlDeviceGetMemoryInfo(self, handle):
        assert handle == ("handle", 0)
        return types.SimpleNamespace(total=8 << 30, free=(5 << 30) - (1 << 19))


def test_nvml_present_reads_used_memory_in_mib(monkeypatch):
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    probe = efficiency.NvmlMemory(0)
    assert probe.name == "Fake GPU" and probe() == 3072.0  # whole MiB: the half MiB is floored
    probe.close()
    assert fake.calls == ["init", "shutdown"]
    with pytest.raises(RuntimeError, match="GPU index 1 out of range"):
        efficiency.NvmlMemory(1)
    assert fake.calls[-1] == "shutdown"
