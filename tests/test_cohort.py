"""A cohort in several processes: parts (--part/--num-parts, RUNET_PART), a torchrun launch on the CPU (gloo),
--skip-existing, the per-case CSV log and its lock, and the usage errors of these options."""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from inference import predict
from inference.case_log import CSV_COLUMNS, CaseRecord, append_row
from inference.cohort import Share, select_part, share_from_options
from inference.distributed import Launch, launch_from_env, process_device
from phantom.generate import write_dataset

REPO = Path(__file__).resolve().parents[1]
COHORT_ENV = ("RUNET_PART", "RUNET_NUM_PARTS", "RANK", "WORLD_SIZE", "LOCAL_RANK")
CASES = [f"PHANTOM_{i:04d}" for i in range(5)]


@pytest.fixture(autouse=True)
def no_cohort_env(monkeypatch):
    for name in COHORT_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Five 32 x 32 x 16 phantoms (10 x 10 x 8 mm voxels, any axis order), images only: the input folder."""
    out = tmp_path_factory.mktemp("cohort")
    names = write_dataset(
        out,
        len(CASES),
        seed=5,
        images_only=True,
        size_xy=32,
        slices=16,
        spacing=(10.0, 10.0, 8.0),
        orientations="any",
        generator_version=2,
    )
    assert names == CASES
    return out / "imagesTr"


def predict_args(inputs: Path, outputs: Path, weights: Path, *extra: str) -> list[str]:
    return ["-i", str(inputs), "-o", str(outputs), "--weights", str(weights), "--device", "cpu", *extra]


def run_in_process(capsys, argv: list[str]) -> tuple[int, list[str]]:
    """predict.main in this process: its exit code and its stderr lines."""
    capsys.readouterr()
    code = predict.main(argv)
    return code, capsys.readouterr().err.splitlines()


def written_names(lines: list[str]) -> list[str]:
    """The cases a run logged as written ("<case>: <size> voxels ..."). Searched, not split off the line's start:
    under torchrun the processes share one stderr, where output another process leaves without a newline (a
    native library's) can precede one of our lines; each of our lines is one write, so nothing lands inside it."""
    return [
        m.group(1) for ln in lines if (m := re.search(r"(PHANTOM_\d{4}): \d+x\d+x\d+ voxels \(canonical xyz\)", ln))
    ]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def single(cohort, tiny_weights, tmp_path_factory) -> Path:
    """The label maps of one process over the whole cohort."""
    out = tmp_path_factory.mktemp("single") / "out"
    with pytest.MonkeyPatch.context() as m:
        for name in COHORT_ENV:
            m.delenv(name, raising=False)
        assert predict.main(predict_args(cohort, out, tiny_weights)) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.nii.gz" for c in CASES]
    return out


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert all(len(r) == len(CSV_COLUMNS) for r in rows)
    return [dict(zip(CSV_COLUMNS, r)) for r in rows[1:]]


# --- the split ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 16])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_parts_deal_every_case_to_exactly_one_part(n, parts):
    cases = [f"c{i:02d}" for i in range(n)]
    chosen = [select_part(cases, k, parts) for k in range(parts)]
    assert sorted(c for part in chosen for c in part) == cases  # each case once
    assert max(map(len, chosen)) - min(map(len, chosen)) <= 1
    assert all(part == cases[k::parts] for k, part in enumerate(chosen))  # round-robin, sorted order kept


def test_torchrun_ranks_split_a_part_again():
    cases = list(range(23))
    shares = [Share(part, 3, Launch(rank, 2, rank)) for part in range(3) for rank in range(2)]
    chosen = [share.select(cases) for share in shares]
    assert sorted(c for part in chosen for c in part) == cases
    assert Share(1, 3, Launch(1, 2, 1)).select(cases) == [4, 10, 16, 22]  # part 1: 1, 4, 7, ...; rank 1: every other
    assert Share(1, 3, Launch(1, 2, 1)).describe() == "rank 1 of 2 in part 1 of 3"
    assert Share().describe() == "" and not Share().sharded


def test_options_fall_back_on_the_environment():
    assert share_from_options(None, None, {}) == Share()
    assert share_from_options(None, None, {"RUNET_PART": "2", "RUNET_NUM_PARTS": "4"}) == Share(2, 4)
    assert share_from_options(1, None, {"RUNET_PART": "2", "RUNET_NUM_PARTS": "4"}) == Share(1, 4)  # option first
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert share_from_options(None, None, env) == Share(launch=Launch(3, 4, 1))
    assert launch_from_env({"WORLD_SIZE": "1", "RANK": "0"}) == Launch()


@pytest.mark.parametrize(
    "part, parts, env, message",
    [
        (3, 3, {}, "--part must be below --num-parts (parts count from 0): got part 3 of 3"),
        (-1, 3, {}, "--part must be >= 0 (parts count from 0), got -1"),
        (0, 0, {}, "--num-parts must be >= 1, got 0"),
        (1, None, {}, "--part needs --num-parts (or RUNET_NUM_PARTS)"),
        (None, 4, {}, "--num-parts needs --part (or RUNET_PART)"),
        (None, None, {"RUNET_PART": "x", "RUNET_NUM_PARTS": "2"}, "RUNET_PART='x' is not an integer"),
        (None, None, {"WORLD_SIZE": "2"}, "RANK=None must be set to an integer in [0, WORLD_SIZE=2)"),
        (None, None, {"WORLD_SIZE": "2", "RANK": "2"}, "RANK='2' must be set to an integer in [0, WORLD_SIZE=2)"),
    ],
)
def test_bad_shares_are_refused(part, parts, env, message):
    with pytest.raises(ValueError) as info:
        share_from_options(part, parts, env)
    assert str(info.value) == message


def test_each_torchrun_process_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    assert process_device("auto", Launch(3, 4, 3)) == "cuda:1"  # more processes than GPUs: they share them
    assert process_device("cuda", Launch(0, 4, 0)) == "cuda:0"
    assert process_device("cpu", Launch(3, 4, 3)) == "cpu"
    assert process_device("cuda:1", Launch(0, 4, 0)) == "cuda:1"
    assert process_device("auto", Launch()) == "auto"  # a single process picks as before
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert process_device("auto", Launch(1, 2, 1)) == "auto"


# --- parts and torchrun, end to end ------------------------------------------------------------------------------


def test_two_parts_in_one_folder_equal_one_process(cohort, single, tiny_weights, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, part0 = run_in_process(capsys, predict_args(cohort, out, tiny_weights, "--part", "0", "--num-parts", "2"))
    assert code == 0
    assert part0[0].startswith("RUnet: 3 cases (part 0 of 2), device cpu")
    monkeypatch.setenv("RUNET_PART", "1")  # the second part through the environment, as a batch system sets it
    monkeypatch.setenv("RUNET_NUM_PARTS", "2")
    code, part1 = run_in_process(capsys, predict_args(cohort, out, tiny_weights))
    assert code == 0
    assert written_names(part0) == CASES[0::2] and written_names(part1) == CASES[1::2]  # each case once
    assert folder_bytes(out) == folder_bytes(single)
    assert part1[-1].startswith(f"2 of 2 cases written to {out} in ")


def test_more_parts_than_cases_leave_some_parts_empty(cohort, tiny_weights, tmp_path, capsys):
    code, lines = run_in_process(
        capsys, predict_args(cohort, tmp_path / "out", tiny_weights, "--part", "6", "--num-parts", "7")
    )
    assert code == 0
    assert lines[0] == "RUnet: no case to segment in part 6 of 7"
    assert len(lines) == 2 and lines[1].startswith(f"0 of 0 cases written to {tmp_path / 'out'} in ")
    assert list((tmp_path / "out").iterdir()) == []


def test_predict_sh_passes_extra_arguments(cohort, single, tiny_weights, tmp_path):
    env = {**os.environ, "INPUT_DIR": str(cohort), "OUTPUT_DIR": str(tmp_path / "out"), "PYTHON": sys.executable}
    env["RUNET_WEIGHTS"] = str(tiny_weights)
    result = subprocess.run(
        ["sh", str(REPO / "predict.sh"), "--part", "1", "--num-parts", "2", "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert written_names(result.stderr.splitlines()) == CASES[1::2]
    assert folder_bytes(tmp_path / "out") == {k: v for k, v in folder_bytes(single).items() if k[:-7] in CASES[1::2]}


def test_torchrun_two_processes_on_the_cpu(cohort, single, tiny_weights, tmp_path):
    """Two gloo processes: the label maps of one process, one log line and one CSV row per case, the summary of both
    ranks printed once by rank 0, and a failed case of rank 1 makes the launch fail."""
    inputs = tmp_path / "in"
    shutil.copytree(cohort, inputs)
    (inputs / "PHANTOM_0005_0000.nii.gz").write_bytes(b"not an image")  # position 5 of 6: rank 1's
    out, log_csv = tmp_path / "out", tmp_path / "logs" / "cases.csv"
    env = {k: v for k, v in os.environ.items() if k not in COHORT_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "inference.predict", *predict_args(inputs, out, tiny_weights, "--log-csv", str(log_csv))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode != 0, result.stderr
    lines = result.stderr.splitlines()
    assert sorted(written_names(lines)) == CASES  # each case once
    assert folder_bytes(out) == folder_bytes(single)
    # counted in the whole text, not at line starts: see written_names
    assert result.stderr.count("RUnet: 3 cases (rank 0 of 2), device cpu") == 1
    assert result.stderr.count("RUnet: 3 cases (rank 1 of 2), device cpu") == 1
    summary = [ln for ln in lines if " cases written to " in ln]
    assert len(summary) == 1 and f"5 of 6 cases written to {out} in " in summary[0]
    assert " by 2 processes, mean " in summary[0]
    assert sum(ln.endswith("failed case: PHANTOM_0005") for ln in lines) == 1
    rows = read_log(log_csv)
    assert sorted(r["case"] for r in rows) == [*CASES, "PHANTOM_0005"]
    bad = next(r for r in rows if r["case"] == "PHANTOM_0005")
    assert (
        bad["status"] == "failed" and bad["size_xyz"] == "" and str(inputs / "PHANTOM_0005_0000.nii.gz") in bad["error"]
    )
    assert all(r["status"] == "written" for r in rows if r["case"] != "PHANTOM_0005")


# --- resuming ---------------------------------------------------------------------------------------------------


def test_skip_existing_redoes_a_deleted_and_a_truncated_output_only(cohort, single, tiny_weights, tmp_path, capsys):
    out, log_csv = tmp_path / "out", tmp_path / "cases.csv"
    shutil.copytree(single, out)
    deleted, truncated = out / f"{CASES[1]}.nii.gz", out / f"{CASES[3]}.nii.gz"
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if p != truncated}
    code, lines = run_in_process(
        capsys, predict_args(cohort, out, tiny_weights, "--skip-existing", "--log-csv", str(log_csv))
    )
    assert code == 0
    assert written_names(lines) == [CASES[1], CASES[3]]
    assert sum(ln.startswith(f"redoing {truncated}: truncated or corrupt file") for ln in lines) == 1
    assert f"--skip-existing: kept 3 label maps in {out} that read whole" in lines
    assert lines[-1].startswith(f"2 of 5 cases written to {out} in ")
    assert ", 3 already there (--skip-existing), mean " in lines[-1]
    assert {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name in kept if (p := out / name)} == kept
    assert folder_bytes(out) == folder_bytes(single)
    status = {r["case"]: r["status"] for r in read_log(log_csv)}
    assert status == {c: "written" if c in (CASES[1], CASES[3]) else "existing" for c in CASES}
    code, lines = run_in_process(capsys, predict_args(cohort, out, tiny_weights, "--skip-existing"))
    assert code == 0 and lines[-1].startswith(f"0 of 5 cases written to {out} in 0.")  # nothing left to do


def test_skip_existing_redoes_an_output_of_another_size(cohort, single, tiny_weights, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(single, out)
    other = out / f"{CASES[0]}.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkUInt8), str(other))  # whole, but not this input's label map
    code, lines = run_in_process(capsys, predict_args(cohort, out, tiny_weights, "--skip-existing"))
    assert code == 0 and written_names(lines) == [CASES[0]]
    assert any(ln.startswith(f"redoing {other}: the written file's header says size (8, 8, 8)") for ln in lines)
    assert folder_bytes(out) == folder_bytes(single)


# --- the CSV log ------------------------------------------------------------------------------------------------


def test_log_rows_describe_each_case(cohort, single, tiny_weights, tmp_path, capsys):
    log_csv = tmp_path / "cases.csv"
    code, _ = run_in_process(capsys, predict_args(cohort, tmp_path / "out", tiny_weights, "--log-csv", str(log_csv)))
    assert code == 0
    rows = read_log(log_csv)
    assert [r["case"] for r in rows] == CASES
    for row in rows:
        image = sitk.ReadImage(str(cohort / f"{row['case']}_0000.nii.gz"))
        assert row["size_xyz"] == "x".join(str(s) for s in image.GetSize())  # the file's axis order
        assert row["spacing_xyz_mm"] == "x".join(f"{s:g}" for s in image.GetSpacing())
        assert (row["stride"], row["phases"], row["status"], row["error"]) == ("1", "1", "written", "")
        assert float(row["seconds"]) > 0 and float(row["peak_memory_mb"]) > 0
    assert len({r["size_xyz"] for r in rows}) > 1  # the phantoms' axis orders differ, so the check above has teeth
    code, _ = run_in_process(capsys, predict_args(cohort, tmp_path / "out2", tiny_weights, "--log-csv", str(log_csv)))
    assert [r["case"] for r in read_log(log_csv)] == CASES + CASES  # a second run appends, one header


def _append_many(path: str, worker: int, rows: int) -> None:
    for i in range(rows):
        append_row(Path(path), CaseRecord(f"w{worker}-{i}", "failed", 0.5, error=f"{worker}" * 20000))


def test_rows_of_parallel_processes_never_interleave(tmp_path):
    """Rows of 20 kB (well above the size the kernel writes in one piece) from two processes at once."""
    path = tmp_path / "cases.csv"
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(str(path), w, 40)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    rows = read_log(path)
    assert sorted(r["case"] for r in rows) == sorted(f"w{w}-{i}" for w in range(2) for i in range(40))
    assert all(r["error"] == r["case"][1] * 20000 for r in rows)


# --- usage errors -----------------------------------------------------------------------------------------------


def usage_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        predict.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith("python -m inference.predict: error: ") and lines[0].endswith("--help)")
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--part", "2", "--num-parts", "2"], "--part must be below --num-parts (parts count from 0): got part 2 of 2"),
        (["--part", "-1", "--num-parts", "2"], "--part must be >= 0 (parts count from 0), got -1"),
        (["--part", "0"], "--part needs --num-parts (or RUNET_NUM_PARTS)"),
        (["--log-csv", "{out}/cases.csv"], "--log-csv {out}/cases.csv lies in the output folder {out}"),
        (["--log-csv", "{out}/sub/cases.csv"], "--log-csv {out}/sub/cases.csv lies in the output folder {out}"),
        (["--log-csv", "{tmp}"], "--log-csv {tmp} is a folder, not a regular file; give a file name"),
        (["--log-csv", "{weights}"], "--log-csv {weights} exists and is not a per-case log of this program"),
    ],
)
def test_usage_errors(cohort, tiny_weights, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    fill = {"out": out, "tmp": tmp_path, "weights": tiny_weights}
    line = usage_error(capsys, predict_args(cohort, out, tiny_weights, *(e.format(**fill) for e in extra)))
    assert message.format(**fill) in line
    assert not out.exists()


def test_usage_error_of_the_environment(cohort, tiny_weights, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RUNET_PART", "3")
    monkeypatch.setenv("RUNET_NUM_PARTS", "3")
    line = usage_error(capsys, predict_args(cohort, tmp_path / "out", tiny_weights))
    assert "--part must be below --num-parts (parts count from 0): got part 3 of 3" in line
