"""Nothing lost: a full disk, -o equal to -i, signals, memory limits, long names, non-regular inputs, malformed
headers and checkpoints. Each CLI test checks the exit code, the one stderr line and that no input byte changed."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import inference.predict as predict
from inference import runner
from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_sha256sums
from inference.ct_io import InputError, OutputError, read_ct, write_labels
from inference.engine import Segmenter
from inference.model import RUNet, UNetConfig
from inference.partial_files import OUTPUTS, PARTIAL_DIR, temp_path
from inference.preprocess import Normalization
from niftiio.nifti_file import decode_fully, read_header

REPO = Path(__file__).resolve().parents[1]


def write_ct(path: Path, shape_zyx=(6, 20, 24), dtype=np.int16) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path))


def snapshot(folder: Path) -> dict[str, str]:
    """name -> sha256 of every regular file (links not followed), or the kind of entry."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_symlink() or not p.is_file():
            out[p.name] = "link" if p.is_symlink() else "other"
        else:
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "inference.predict", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def failed_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("failed: ")]


def nifti_bytes(shape_xyz=(6, 5, 4), datatype=4, bitpix=16) -> bytearray:
    """An uncompressed NIfTI-1 file of zeros (int16 unless told), to edit."""
    raw = bytearray(348)
    raw[0:4] = struct.pack("<i", 348)
    raw[40:56] = struct.pack("<8h", 3, *shape_xyz, 1, 1, 1, 1)
    raw[70:74] = struct.pack("<2h", datatype, bitpix)
    raw[76:108] = struct.pack("<8f", 1, 1, 1, 1, 0, 0, 0, 0)
    raw[108:112] = struct.pack("<f", 352)
    raw[112:116] = struct.pack("<f", 1)
    raw[252:256] = struct.pack("<2h", 0, 0)
    raw[344:348] = b"n+1\0"
    return raw + bytes(4) + bytes(int(np.prod(shape_xyz)) * max(bitpix, 8) // 8)


# --- 1. a full disk --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 4 KiB tmpfs (one page: room for one small label map), mounted for the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "full"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_disk_full_fails_the_cases_that_do_not_fit(tiny_weights, tiny_tmpfs, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in "abc":
        write_ct(inputs / f"{name}_0000.nii.gz")
    before = snapshot(inputs)
    result = cli("-i", str(inputs), "-o", str(tiny_tmpfs), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.returncode == 1, result.stderr
    lines = failed_lines(result.stderr)
    assert [ln.split(": ")[1] for ln in lines] == [str(tiny_tmpfs / "b.nii.gz"), str(tiny_tmpfs / "c.nii.gz")]
    assert all("no space left on device" in ln for ln in lines), result.stderr
    assert "1 of 3 cases written" in result.stderr
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["a.nii.gz"]  # no partial file, no temporary file
    header = read_header(tiny_tmpfs / "a.nii.gz")
    assert decode_fully(tiny_tmpfs / "a.nii.gz", header).problem is None
    assert snapshot(inputs) == before


def test_a_write_that_is_not_whole_never_gets_the_final_name(tmp_path, monkeypatch):
    write_ct(tmp_path / "a_0000.nii.gz")
    volume = read_ct(tmp_path / "a_0000.nii.gz")
    labels = np.zeros(volume.image.shape, np.uint8)
    real_write = sitk.WriteImage

    def short_write(image, name, useCompression=False):
        real_write(image, name, useCompression=useCompression)
        Path(name).write_bytes(Path(name).read_bytes()[:-20])  # what a full disk leaves: the gzip stream cut

    monkeypatch.setattr(sitk, "WriteImage", short_write)
    with pytest.raises(OutputError, match="not written whole.*truncated or corrupt") as info:
        write_labels(tmp_path / "a.nii.gz", labels, volume)
    assert str(tmp_path / "a.nii.gz") in str(info.value) and "\n" not in str(info.value)

    def noisy_write(image, name, useCompression=False):
        real_write(image, name, useCompression=useCompression)
        os.write(2, b"WARNING: In itkNiftiImageIO.cxx, line 1\nNiftiImageIO (0x1234): something odd\n")

    monkeypatch.setattr(sitk, "WriteImage", noisy_write)
    with pytest.raises(OutputError, match="the image writer reported: NiftiImageIO: something odd"):
        write_labels(tmp_path / "a.nii.gz", labels, volume)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_0000.nii.gz"]


# --- 2. the output folder is the input folder -----------------------------------------------------------------


def test_output_folder_equal_to_input_is_refused(tiny_weights, tmp_path):
    folder = tmp_path / "flare"
    folder.mkdir()
    for case in ("X", "X_0000", "Y"):  # case X_0000's output would be X's image; Y's, its ground truth
        write_ct(folder / f"{case}_0000.nii.gz")
    sitk.WriteImage(sitk.Image([24, 20, 6], sitk.sitkUInt8), str(folder / "Y.nii.gz"))
    (tmp_path / "same").symlink_to(folder)
    before = snapshot(folder)
    for out in (folder, tmp_path / "same"):
        result = cli("-i", str(folder), "-o", str(out), "--weights", str(tiny_weights))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"-o {out} is the input folder"), result.stderr
    assert snapshot(folder) == before


def test_output_folder_rules(tmp_path):
    inputs, other = tmp_path / "in", tmp_path / "other"
    inputs.mkdir()
    other.mkdir()
    (other / "a_0000.nii.gz").write_bytes(b"x")
    (inputs / "a_0000.nii.gz").symlink_to(other / "a_0000.nii.gz")
    cases = [inputs / "a_0000.nii.gz"]
    weights = tmp_path / "w" / "runet.pt"
    assert runner.overlap_problem(inputs, inputs / "out", cases + [weights]) is None  # inside the input: allowed
    assert runner.overlap_problem(inputs, tmp_path / "new", cases + [weights]) is None  # not there yet
    problem = runner.overlap_problem(inputs, other, cases + [weights])
    assert problem == f"-o {other} holds {inputs / 'a_0000.nii.gz'}, which this run reads; choose another output folder"
    weights.parent.mkdir()
    assert "holds" in runner.overlap_problem(inputs, weights.parent, [weights])


# --- 3. one case out of memory ----------------------------------------------------------------------------------


def test_memory_estimate_refuses_a_case_under_an_address_space_limit(tiny_weights, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    # an honest file of zeros that decodes to 300 MB (157M voxels: about 2.2 GB to segment); then a valid case
    sitk.WriteImage(sitk.Image([512, 512, 600], sitk.sitkInt16), str(inputs / "a_big_0000.nii.gz"))
    write_ct(inputs / "b_0000.nii.gz")
    before = snapshot(inputs)
    child = f"""
import resource, sys
import inference.predict as predict
size = next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 1500 * 2**20, resource.RLIM_INFINITY))
predict.exit_now(predict.main(["-i", {str(inputs)!r}, "-o", {str(outputs)!r}, "--weights", {str(tiny_weights)!r},
                               "--device", "cpu"]))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    result = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = failed_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"failed: {inputs / 'a_big_0000.nii.gz'}: needs about 2,")
    assert "512x512x600 int16 voxels" in lines[0] and "MB this process may use (address-space limit" in lines[0]
    assert "Traceback" not in result.stderr
    assert [p.name for p in outputs.iterdir()] == ["b.nii.gz"]
    assert snapshot(inputs) == before


def test_any_exception_fails_only_its_case(tiny_weights, tmp_path, monkeypatch, capsys):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in "abc":
        write_ct(inputs / f"{name}_0000.nii.gz")
    real_segment = Segmenter.segment
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    calls = []

    def segment(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError()
        if len(calls) == 2:
            raise KeyError("a bug")
        return real_segment(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", segment)
    code = predict.main(["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert failed_lines(err) == [
        f"failed: {inputs / 'a_0000.nii.gz'}: out of memory (MemoryError)",
        f"failed: {inputs / 'b_0000.nii.gz'}: KeyError: 'a bug'",
    ]
    assert [p.name for p in outputs.iterdir()] == ["c.nii.gz"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # undone after main()


# --- 4. signals and temporary files ---------------------------------------------------------------------------


def test_sigterm_during_the_writes_removes_the_partial_file(tiny_weights, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    write_ct(inputs / "c0_0000.nii.gz", shape_zyx=(32, 256, 256))  # label maps of 2M voxels: writes take a while
    for k in range(1, 6):
        os.link(inputs / "c0_0000.nii.gz", inputs / f"c{k}_0000.nii.gz")
    before = snapshot(inputs)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu", "--phases", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference.predict", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (outputs / PARTIAL_DIR).is_dir() and any((outputs / PARTIAL_DIR).iterdir()):
            break
        time.sleep(0.002)
    assert proc.poll() is None, "the run ended before a temporary file was seen"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    line = next(ln for ln in err.splitlines() if ln.startswith("interrupted by SIGTERM: "))
    written = sorted(p.name for p in outputs.iterdir())
    assert all(not name.startswith(".") for name in written)  # no temporary file left
    assert f"{len(written)} of 6 cases written to {outputs}" in line
    for name in written:  # whatever has a final name is whole
        assert name.removesuffix(".nii.gz") in line
        assert decode_fully(outputs / name, read_header(outputs / name)).problem is None
    assert snapshot(inputs) == before


def test_signal_handler_removes_the_file_being_written(tmp_path, monkeypatch, capsys):
    partial = temp_path(tmp_path)
    partial.parent.mkdir()
    partial.write_bytes(b"\x1f\x8b partial")
    monkeypatch.setattr(OUTPUTS, "writing", {partial})
    monkeypatch.setattr(OUTPUTS, "folders", {partial.parent})
    monkeypatch.setattr(OUTPUTS, "written", [tmp_path / "a.nii.gz"])
    codes = []
    monkeypatch.setattr(runner, "exit_now", codes.append)
    previous = runner.install_signal_handlers(tmp_path, 3)
    try:
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert codes == [130]
    assert capsys.readouterr().err == (
        f"interrupted by SIGINT: 1 of 3 cases written to {tmp_path} (a); removed the partial file {partial}\n"
    )
    assert not partial.exists() and not partial.parent.exists()


def test_abandoned_temporary_files_are_removed_at_start(tiny_weights, tmp_path):
    """What a killed run left in the hidden subfolder goes (no process holds it); names beside it stay, whatever
    they look like: each may be an output (a case named .runet-0123abcd)."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (outputs / PARTIAL_DIR).mkdir(parents=True)
    write_ct(inputs / "a_0000.nii.gz")
    stale = [temp_path(outputs), temp_path(outputs, ".png")]
    keep = [outputs / ".runet-0123abcd.nii.gz", outputs / ".a.nii.gz.0123456789abcdef0123456789abcdef.tmp.nii.gz"]
    for p in stale + keep + [outputs / "notes.txt"]:
        p.write_bytes(b"x")
    result = cli("-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"removed 2 temporary files left in {outputs} by an interrupted run" in result.stderr.splitlines()
    assert sorted(p.name for p in outputs.iterdir()) == sorted(["a.nii.gz", "notes.txt", *(p.name for p in keep)])


# --- 6. long names, 7. non-regular inputs, 9. the right words, 10. non-finite voxels -------------------------


def test_long_names_non_regular_inputs_and_bad_headers_in_one_run(tiny_weights, tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    long_case = "L" * 230
    write_ct(inputs / f"{long_case}_0000.nii.gz")
    (inputs / "dangling_0000.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    (inputs / "folder_0000.nii.gz").mkdir()
    os.mkfifo(inputs / "fifo_0000.nii.gz")
    (inputs / "zero_0000.nii.gz").symlink_to("/dev/zero")
    raw = nifti_bytes()
    raw[40:48] = struct.pack("<4h", 3, -6, 5, 4)
    (inputs / "negdim_0000.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    (inputs / "onebit_0000.nii.gz").write_bytes(gzip.compress(bytes(nifti_bytes(datatype=1, bitpix=1))))
    raw = nifti_bytes()
    raw[252:256] = struct.pack("<2h", 0, 1)  # an sform with a skew: ITK prints a warning, then fails
    raw[280:328] = struct.pack("<12f", 1, 0.5, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0)
    (inputs / "skew_0000.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    nan = np.random.default_rng(1).integers(-1000, 400, size=(6, 20, 24)).astype(np.float32)
    nan[0, 0, :3] = (np.nan, np.inf, -np.inf)
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(inputs / "nan_0000.nii.gz"))
    (inputs / "notes.txt").write_text("not an image")
    (inputs / "labels.nii.gz").write_text("not an image either")
    before = snapshot(inputs)
    result = cli("-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--device", "cpu")
    assert result.returncode == 1, result.stderr
    expected = {
        "dangling": f"dangling symbolic link (its target {tmp_path / 'gone.nii.gz'} does not exist)",
        "folder": "is a folder, not an image file",
        "fifo": "is a named pipe (FIFO), not an image file",
        "zero": "is a character device (a symbolic link to /dev/zero), not an image file",
        "negdim": "invalid image size (-6, 5, 4) in the NIfTI header (every size must be >= 1)",
        "onebit": "1-bit (binary) voxels are not supported (a real-valued scalar image is needed)",
        "skew": "cannot read image (ITK only supports orthonormal direction cosines.  No orthonormal definition "
        "found!; NiftiImageIO: ",
    }
    lines = failed_lines(result.stderr)
    assert len(lines) == len(expected), result.stderr
    for case, reason in expected.items():
        assert any(ln.startswith(f"failed: {inputs / case}_0000.nii.gz: {reason}") for ln in lines), (case, lines)
    assert "2 files are not <case>_0000.nii.gz inputs and were skipped; -v lists them" in result.stderr
    assert f"warning: {inputs / 'nan_0000.nii.gz'}: 3 of 2880 voxels are NaN or Inf; read as air (-1000 HU)" in (
        result.stderr.splitlines()
    )
    for noise in ("WARNING: In", "** ERROR", "Traceback", "skipping"):
        assert noise not in result.stderr
    assert sorted(p.name for p in outputs.iterdir()) == sorted([f"{long_case}.nii.gz", "nan.nii.gz"])
    assert snapshot(inputs) == before


def test_non_finite_voxels_become_air_and_complex_is_refused(tmp_path):
    values = np.zeros((4, 5, 6), np.float32)
    values[1, 2, 3], values[3, 4, 5] = np.nan, -np.inf
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "f_0000.nii.gz"))
    volume = read_ct(tmp_path / "f_0000.nii.gz")
    assert volume.image[1, 2, 3] == -1000 and volume.image[3, 4, 5] == -1000
    assert np.count_nonzero(volume.image) == 2 and volume.warnings == (
        f"{tmp_path / 'f_0000.nii.gz'}: 2 of 120 voxels are NaN or Inf; read as air (-1000 HU)",
    )
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), np.nan, np.float32)), str(tmp_path / "n_0000.nii.gz"))
    with pytest.raises(InputError, match="every voxel is NaN or Inf"):
        read_ct(tmp_path / "n_0000.nii.gz")
    complex_image = sitk.GetImageFromArray(np.ones((4, 5, 6), np.complex64))
    sitk.WriteImage(complex_image, str(tmp_path / "c_0000.nii.gz"))
    with pytest.raises(InputError, match=r"c_0000.nii.gz: complex64 voxels are not supported"):
        read_ct(tmp_path / "c_0000.nii.gz")


def test_zero_size_is_not_called_truncated(tmp_path):
    raw = nifti_bytes()
    raw[40:48] = struct.pack("<4h", 3, 0, 5, 4)
    (tmp_path / "z_0000.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match=r"invalid image size \(0, 5, 4\)"):
        read_ct(tmp_path / "z_0000.nii.gz")


def _without_permission_override(code: str) -> subprocess.CompletedProcess:
    """Run python code so that file permissions apply (root reads any file: drop its capabilities to override
    them, with setpriv)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permissions cannot be made to apply")
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    return subprocess.run([*prefix, sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_permission_problems_are_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    write_ct(tmp_path / "m_0000.nii.gz")
    locked.chmod(0o000)
    (tmp_path / "m_0000.nii.gz").chmod(0o000)
    try:
        result = _without_permission_override(
            f"import sys, inference.predict as p\nsys.exit(p.main(['-i', {str(locked)!r}, '-o', {str(tmp_path)!r}]))"
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"{locked}: cannot list the input folder (Permission denied)\n"
        result = _without_permission_override(
            "from inference.ct_io import read_ct, InputError\n"
            f"try:\n    read_ct({str(tmp_path / 'm_0000.nii.gz')!r})\nexcept InputError as e:\n    print(e)"
        )
        assert result.stdout == f"{tmp_path / 'm_0000.nii.gz'}: permission denied (the file is not readable)\n"
    finally:
        locked.chmod(0o700)


# --- 8. checkpoints -------------------------------------------------------------------------------------------


def test_malformed_checkpoints_are_one_line(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "good.pt", RUNet(UNetConfig(widths=(2, 4))), Normalization())
    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    variants = {
        "no_config": ({k: v for k, v in payload.items() if k != "config"}, "no 'config' entry"),
        "config_list": ({**payload, "config": [1, 2]}, "entry 'config' is of type list, not dict"),
        "unknown_key": ({**payload, "config": {**payload["config"], "bogus": 1}}, "unexpected keyword"),
        "huge_widths": (
            {**payload, "config": {**payload["config"], "widths": [2**20, 2**21]}},
            "weights do not fit the saved config",
        ),
        "labels_int": ({**payload, "label_names": 5}, "entry 'label_names' is of type int, not dict"),
        "norm_short": ({**payload, "normalization": {"hu_min": 0.0}}, "no 'hu_max' entry"),
    }
    for name, (content, _) in variants.items():
        torch.save(content, tmp_path / f"{name}.pt")
    write_sha256sums(tmp_path)
    for name, (_, message) in variants.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / f"{name}.pt")
        text = str(info.value)
        assert text.startswith(f"{tmp_path / name}.pt: malformed RUnet checkpoint (") and message in text, text
        assert "\n" not in text
    (tmp_path / "SHA256SUMS").write_bytes(bytes(range(128, 256)))
    with pytest.raises(CheckpointError, match=r"SHA256SUMS: not a SHA256SUMS file \(byte 0 is not text\)"):
        load_checkpoint(tmp_path / "good.pt")
