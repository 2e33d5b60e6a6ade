"""A run trusts nothing it finds: a --log-csv that is a device or a FIFO, file names that are not UTF-8 or hold a
newline, another process writing into the same output folder, a signal at any moment of a write, an output without
any organ, images that are not CT, torchrun's variables half set."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference import partial_files, predict, runner
from inference.ct_io import ct_volume, read_ct, write_labels
from inference.engine import Segmenter
from inference.inputs.hu_check import NOT_HU, check_intensities
from inference.names import name_problem, shown
from inference.partial_files import OUTPUTS, PARTIAL_DIR, remove_abandoned_temp_files
from niftiio.nifti_file import decode_fully, read_header

REPO = Path(__file__).resolve().parents[1]


def write_ct(path: Path, shape_zyx=(6, 20, 24)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path.parent / "tmp.nii.gz"))  # ITK cannot take every name: renamed by Python
    os.rename(path.parent / "tmp.nii.gz", path)


def predict_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "inference.predict", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


# --- the log file -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_log_csv_that_is_no_regular_file_is_a_usage_error(tiny_weights, tmp_path, kind):
    """/dev/full reads zeros without end and a FIFO blocks its reader: both are refused at once, in one line."""
    if kind == "device":
        log_csv, what = Path("/dev/full"), "a character device"
    else:
        log_csv, what = tmp_path / "log.csv", "a named pipe (FIFO)"
        os.mkfifo(log_csv)
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a_0000.nii.gz")
    args = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)]
    result = predict_cli(*args, "--log-csv", str(log_csv), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"python -m inference.predict: error: --log-csv {log_csv} is {what}, not a regular file; give a file name "
        "(see python -m inference.predict --help)"
    ]
    assert not (tmp_path / "out").exists()


# --- names --------------------------------------------------------------------------------------------------------


def test_a_name_that_is_not_utf8_fails_alone_and_a_newline_stays_in_its_line(tiny_weights, tmp_path):
    """The image library aborts the process on a name that is not UTF-8 (even in the read-ahead thread): that case
    fails alone, shown escaped, and the cases around it are written; a newline in a name is escaped in every
    line and CSV row."""
    inputs, outputs, log_csv = tmp_path / "in", tmp_path / "out", tmp_path / "log.csv"
    inputs.mkdir()
    bad = inputs / os.fsdecode(b"b\xff\xfe_0000.nii.gz")
    for path in (inputs / "a_0000.nii.gz", bad, inputs / "c_0000.nii.gz", inputs / "new\nline_0000.nii.gz"):
        write_ct(path)
    args = ["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu"]
    result = predict_cli(*args, "--log-csv", str(log_csv))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr
    escaped = f"{inputs}/b\\xff\\xfe_0000.nii.gz"
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("failed")] == [
        f"failed: {escaped}: the name is not valid UTF-8, which the image library cannot open; rename it",
        "failed case: b\\xff\\xfe",
    ]
    assert any(ln.startswith("new\\nline: 24x20x6 voxels") for ln in result.stderr.splitlines())
    assert sorted(os.listdir(outputs)) == ["a.nii.gz", "c.nii.gz", "new\nline.nii.gz"]
    rows = log_csv.read_text().splitlines()
    assert len(rows) == 5
    assert [(r["case"], r["status"]) for r in csv.DictReader(rows)] == [
        ("a", "written"),
        ("b\\xff\\xfe", "failed"),
        ("c", "written"),
        ("new\\nline", "written"),
    ]


def test_names_are_shown_on_one_printable_line():
    assert shown("plain name_1.nii.gz") == "plain name_1.nii.gz"
    assert shown(os.fsdecode(b"a\xff\tb\x1b[31m\rc\nd")) == "a\\xff\\tb\\x1b[31m\\rc\\nd"
    assert (
        name_problem(os.fsdecode(b"x\xfe"))
        == "x\\xfe: the name is not valid UTF-8, which the image library cannot open; rename it"
    )
    assert name_problem("caf\u00e9") is None


# --- temporary files: another process on the folder, signals ------------------------------------------------------

HOLD = """import sys, time
from pathlib import Path
from inference.partial_files import temp_file
with temp_file(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"partial")
    print(tmp, flush=True)
    time.sleep(600)
"""


def whole(path: Path) -> bool:
    return decode_fully(path, read_header(path)).problem is None


def test_a_paused_writer_keeps_its_file_and_no_case_name_is_a_temporary_one(tiny_weights, tmp_path, capsys):
    """A process paused (SIGSTOP) while it writes into the output folder keeps its temporary file through two runs
    into that folder; once it is killed, the next run removes what it left. A case named like a temporary file of
    earlier versions (.runet-deadbeef) keeps its label map through every run."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    write_ct(inputs / ".runet-deadbeef_0000.nii.gz")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(outputs)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        held = Path(holder.stdout.readline().strip())
        assert held.parent == outputs / PARTIAL_DIR
        holder.send_signal(signal.SIGSTOP)
        args = ["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu"]
        for _ in range(2):
            assert predict.main(args) == 0
            assert held.read_bytes() == b"partial"
            assert whole(outputs / ".runet-deadbeef.nii.gz")
        assert "temporary file" not in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert predict.main(args) == 0
    assert f"removed 1 temporary file left in {outputs} by an interrupted run" in capsys.readouterr().err
    assert sorted(os.listdir(outputs)) == [".runet-deadbeef.nii.gz"]  # the subfolder went when left empty
    assert remove_abandoned_temp_files(outputs) == []


class Ended(BaseException):
    """What the test's exit_now raises instead of ending the process."""


def _signal_at(monkeypatch, point: str, signum: int) -> None:
    """Deliver ``signum`` to this process at ``point`` of a write: just after the temporary file is created (before
    its lock), after the image library wrote it, or just after its rename (before its record)."""
    module, name = {
        "created": (partial_files.fcntl, "flock"),
        "written": (sitk, "WriteImage"),
        "renamed": (partial_files.os, "replace"),
    }[point]
    real, sent = getattr(module, name), []

    def hooked(*args, **kwargs):
        if point == "created" and not sent:
            sent.append(signum)
            signal.raise_signal(signum)  # the handler runs within this call
        result = real(*args, **kwargs)
        if not sent:
            sent.append(signum)
            signal.raise_signal(signum)
        return result

    monkeypatch.setattr(module, name, hooked)


SIGNAL_CASE = "RUNET_TEST_SIGNAL_CASE"
"""Set (to "<point>-<signal number>") in the fresh interpreter that runs one signal case."""


@pytest.mark.parametrize(
    "point, signum",
    [
        ("created", signal.SIGTERM),
        ("written", signal.SIGINT),
        ("written", signal.SIGHUP),
        ("renamed", signal.SIGTERM),
    ],
)
def test_a_signal_at_any_moment_of_a_write_leaves_no_temporary_file(point, signum):
    """Each case runs in a fresh interpreter, as a signal reaches a real run: raised inside a pytest process that
    earlier tests left holding compiled OpenVINO networks, SIGTERM's delivery itself has crashed that process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), SIGNAL_CASE: f"{point}-{int(signum)}"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_one_signal_case"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


def test_one_signal_case(tmp_path, monkeypatch, capfd):
    """What the process would leave if it ended where the handler ends it: never a temporary file; a label map
    renamed is whole and listed (one case of the test above, in the interpreter it starts)."""
    if SIGNAL_CASE not in os.environ:
        pytest.skip("one case of test_a_signal_at_any_moment_of_a_write_leaves_no_temporary_file, run by it")
    point, number = os.environ[SIGNAL_CASE].rsplit("-", 1)
    signum = signal.Signals(int(number))
    write_ct(tmp_path / "a_0000.nii.gz")
    volume = read_ct(tmp_path / "a_0000.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    left: dict = {}

    def exit_now(code: int) -> None:
        left["code"], left["files"] = code, sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        raise Ended

    monkeypatch.setattr(runner, "exit_now", exit_now)
    monkeypatch.setattr(OUTPUTS, "written", [])
    monkeypatch.setattr(OUTPUTS, "writing", set())
    monkeypatch.setattr(OUTPUTS, "folders", set())
    previous = runner.install_signal_handlers(out, 1)
    assert set(previous) == {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    _signal_at(monkeypatch, point, signum)
    try:
        with pytest.raises(Ended):
            write_labels(out / "a.nii.gz", np.ones(volume.image.shape, np.uint8), volume)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    name = signal.Signals(signum).name
    assert left["code"] == 128 + signum
    line = capfd.readouterr().err.splitlines()[-1]  # a handler inside a capture of ITK's output writes to fd 2
    if point == "renamed":
        assert left["files"] == ["a.nii.gz"] and whole(out / "a.nii.gz")
        assert line == f"interrupted by {name}: 1 of 1 case written to {out} (a)"
    else:
        assert left["files"] == []
        assert line.startswith(f"interrupted by {name}: 0 of 1 case written to {out}; removed the partial file ")


# --- an output without any organ -----------------------------------------------------------------------------------


def test_a_body_without_any_organ_gets_a_warning_and_its_status(tiny_weights, tmp_path, monkeypatch, capsys):
    """A label map that is all background while the image shows a body is written, with one warning line naming the
    file, its status in the log and a line in the summary; an image of air alone (no body) gets none."""
    inputs, outputs, log_csv = tmp_path / "in", tmp_path / "out", tmp_path / "log.csv"
    inputs.mkdir()
    for name, hu in (("air", -1000), ("body", 40)):
        img = sitk.GetImageFromArray(np.full((16, 32, 32), hu, np.int16))
        img.SetSpacing((5.0, 5.0, 5.0))  # 2 L in all
        sitk.WriteImage(img, str(inputs / f"{name}_0000.nii.gz"))
    monkeypatch.setattr(Segmenter, "segment", lambda self, image, *a, **k: np.zeros(image.shape, np.uint8))
    args = ["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu"]
    assert predict.main([*args, "--log-csv", str(log_csv)]) == 0
    err = capsys.readouterr().err.splitlines()
    warning = (
        f"{inputs / 'body_0000.nii.gz'}: no organ found, though the image holds 2048 mL above -500 HU (a body); the "
        "label map is all background: check that the image is an abdominal CT"
    )
    assert [ln for ln in err if "no organ" in ln] == [f"warning: {warning}", "no organ found in: body"]
    assert err[-2].startswith(f"2 of 2 cases written to {outputs}")
    rows = list(csv.DictReader(log_csv.read_text().splitlines()))
    assert [(r["case"], r["status"], r["error"]) for r in rows] == [
        ("air", "written", ""),
        ("body", "no_organ", warning),
    ]
    assert sorted(os.listdir(outputs)) == ["air.nii.gz", "body.nii.gz"]


# --- what is not quite CT, and a launch half set ------------------------------------------------------------------


def test_an_oblique_image_is_segmented_with_one_warning_naming_the_angle(tmp_path):
    """A direction 30 degrees off the axes is snapped to the nearest ones (as before), now with a warning."""
    angle = np.radians(30.0)
    c, s = np.cos(angle), np.sin(angle)
    for name, direction in (("oblique", (c, -s, 0, s, c, 0, 0, 0, 1)), ("axial", (1, 0, 0, 0, 1, 0, 0, 0, 1))):
        img = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 400, (6, 20, 24)).astype(np.int16))
        img.SetDirection(direction)
        sitk.WriteImage(img, str(tmp_path / f"{name}.nii.gz"))
    volume = read_ct(tmp_path / "oblique.nii.gz")
    assert volume.orientation == read_ct(tmp_path / "axial.nii.gz").orientation  # the same axes as before
    assert volume.warnings == (
        f"{tmp_path / 'oblique.nii.gz'}: the image axes are 30.0 degrees off the patient's axes (an oblique "
        "direction); segmented as if aligned with the nearest axes, so the network sees the body turned by that "
        "angle (the label map keeps the image's geometry)",
    )
    assert read_ct(tmp_path / "axial.nii.gz").warnings == ()
    in_memory = ct_volume(sitk.ReadImage(str(tmp_path / "oblique.nii.gz")), "series 3")  # a DICOM series
    assert in_memory.warnings == (volume.warnings[0].replace(str(tmp_path / "oblique.nii.gz"), "series 3"),)


@pytest.mark.parametrize(
    "image, reason",
    [
        (np.full((6, 20, 24), 60, np.int16), "every voxel is 60 (int16): a constant image does not look like CT"),
        (
            np.random.default_rng(0).choice([0, 0, 1, 2, 3, 4], size=(6, 20, 24)).astype(np.uint8),
            "intensities 0 to 4 (uint8), only 5 distinct values (0, 1, 2, 3, 4): a label map? It does not look like CT",
        ),
        (
            np.random.default_rng(0).choice([0, 1, 6], size=(6, 20, 24)).astype(np.float32),
            "intensities 0 to 6 (float32), only 3 distinct values (0, 1, 6): a label map? It does not look like CT",
        ),
    ],
)
def test_a_constant_image_and_a_label_map_do_not_look_like_ct(image, reason):
    check = check_intensities(image)
    assert (check.verdict, check.reason, check.shift) == (NOT_HU, reason, 0)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RANK": "1"}, "RANK='1' is set without WORLD_SIZE; set both (torchrun does) or neither"),
        ({"WORLD_SIZE": "2"}, "RANK=None must be set to an integer in [0, WORLD_SIZE=2)"),
    ],
)
def test_a_launch_half_set_is_a_usage_error_in_inference_and_training(tmp_path, monkeypatch, capsys, env, message):
    from training.config import parse_args as training_args

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "in").mkdir()
    for prog, parse, args in (
        ("python -m inference.predict", predict.parse_args, ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "o")]),
        ("python -m training.train", training_args, ["--data", str(tmp_path / "in"), "--out", str(tmp_path / "t")]),
    ):
        with pytest.raises(SystemExit) as info:
            parse(args)
        assert info.value.code == 2
        assert capsys.readouterr().err.splitlines() == [f"{prog}: error: {message} (see {prog} --help)"]
