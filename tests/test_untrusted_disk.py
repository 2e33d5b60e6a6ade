"""What is read from disk is checked before it is used: a checkpoint's values, the OpenVINO cache and the
precision choices kept in the user cache, and where that cache may lie; an allocation that fails says "out of
memory" in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference import openvino_cache, openvino_conversion, precision_choice, predict
from inference.cache_seal import SEAL_FILE, open_document, read_sealed, seal, sealed_document
from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_sha256sums
from inference.engine import Segmenter
from inference.model import RUNet, UNetConfig, fuse_batchnorm
from inference.openvino_backend import OpenVINONetwork
from inference.out_of_memory import out_of_memory
from inference.precision_choice import choose
from inference.preprocess import Normalization
from inference.user_cache import check_cache_location

REPO = Path(__file__).resolve().parents[1]
TINY = UNetConfig(widths=(2, 4, 8))


def write_ct(path: Path, shape_zyx=(6, 20, 24)) -> None:
    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path))


def predict_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, "-m", "inference.predict", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


# --- the checkpoint's values ------------------------------------------------------------------------------------


def _save(path: Path, edit=None, normalization: Normalization | None = None) -> Path:
    """A tiny checkpoint at ``path``, its weights changed by ``edit(model)``, with SHA256SUMS written after."""
    torch.manual_seed(0)
    model = RUNet(TINY)
    path.parent.mkdir(parents=True, exist_ok=True)
    if edit is not None:
        with torch.no_grad():
            edit(model)
    save_checkpoint(path, model, normalization or Normalization())
    write_sha256sums(path.parent)
    return path


def test_a_diverged_checkpoint_is_refused_at_the_command_line(tmp_path):
    """All-NaN float weights (what a diverged run saves, its checksum written after) are exit 2 with one line,
    not a run that writes background everywhere."""
    weights = _save(tmp_path / "w" / "diverged.pt", lambda m: [p.fill_(float("nan")) for p in m.parameters()])
    first, tensor = next((k, t) for k, t in RUNet(TINY).state_dict().items() if t.is_floating_point())
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a_0000.nii.gz")
    result = predict_cli("-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {weights}: weight {first} holds {tensor.numel()} NaN or Inf values of {tensor.numel()}; refused "
        "(a diverged training run saves such weights)"
    ]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_first_non_finite_tensor_is_named(tmp_path):
    def one_inf(model: RUNet) -> None:
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
        bn.running_var[1] = float("inf")

    weights = _save(tmp_path / "inf.pt", one_inf)
    with pytest.raises(CheckpointError, match=r"inf\.pt: weight \S+running_var holds 1 NaN or Inf value of 2;"):
        load_checkpoint(weights)


def test_a_non_finite_hu_window_is_refused(tmp_path):
    weights = _save(tmp_path / "norm.pt")
    payload = torch.load(weights, weights_only=True)
    payload["normalization"]["hu_max"] = float("nan")
    torch.save(payload, weights)
    write_sha256sums(tmp_path)
    with pytest.raises(CheckpointError, match=r"norm\.pt: malformed RUnet checkpoint \(need finite hu_min < hu_max"):
        load_checkpoint(weights)


# --- the OpenVINO cache -------------------------------------------------------------------------------------------


def _ov():
    return pytest.importorskip("openvino")


def _net(seed: int) -> RUNet:
    torch.manual_seed(seed)
    return fuse_batchnorm(RUNet(TINY).eval())


def _probs(net: RUNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


def _flip_signs(folder: Path) -> None:
    """Negate float32 values of model.bin, as the sign flips that once changed a case's labels silently."""
    values = np.fromfile(folder / "model.bin", dtype=np.float32)
    values[: values.size // 2] *= -1
    values.tofile(folder / "model.bin")


def _random_bytes(folder: Path) -> None:
    data = bytearray((folder / "model.bin").read_bytes())
    rng = np.random.default_rng(0)
    at = rng.integers(0, len(data), size=2000)
    data[at[0] : at[0] + 1] = b""  # one byte fewer, and random bytes over others
    for i in at[1:]:
        data[min(i, len(data) - 1)] = int(rng.integers(0, 256))
    (folder / "model.bin").write_bytes(bytes(data))


def _other_ir(folder: Path, other: Path) -> None:
    """Another network's model.xml and model.bin copied over this entry's (its seal kept)."""
    for name in ("model.xml", "model.bin"):
        shutil.copyfile(other / name, folder / name)


def _other_entry(folder: Path, other: Path) -> None:
    """Another entry's whole folder, seal included, copied under this entry's name."""
    shutil.rmtree(folder)
    shutil.copytree(other, folder)


def _unreadable_but_sealed(folder: Path) -> None:
    (folder / "model.xml").write_text("<net>not an OpenVINO model</net>")
    seal(folder, folder.name)


def _no_seal(folder: Path) -> None:
    (folder / SEAL_FILE).unlink()


TAMPERINGS = {
    "signs flipped": (_flip_signs, "model.bin differs from its seal"),
    "random bytes": (_random_bytes, "model.bin differs from its seal"),
    "another network's IR": (_other_ir, "differs from its seal"),
    "another entry": (_other_entry, "sealed for another entry"),
    "unreadable": (_unreadable_but_sealed, "OpenVINO cannot read it"),
    "no seal": (_no_seal, "no readable SEAL.json"),
}


@pytest.fixture(scope="module")
def two_entries(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(cache, entry of _net(0), entry of _net(1)): a cache holding two converted networks, to copy."""
    ov = _ov()
    cache = tmp_path_factory.mktemp("two_entries")
    return cache, *(OpenVINONetwork(_net(seed), ov, cache=cache).cache_folder for seed in (0, 1))


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_a_tampered_cache_entry_is_rebuilt_with_one_line(two_entries, tmp_path, monkeypatch, capsys, tampering):
    ov = _ov()
    net = _net(0)
    shutil.copytree(two_entries[0], tmp_path, dirs_exist_ok=True)
    entry, other_entry = (tmp_path / "openvino" / e.name for e in two_entries[1:])
    capsys.readouterr()
    change, problem = TAMPERINGS[tampering]
    if change in (_other_ir, _other_entry):
        change(entry, other_entry)
    else:
        change(entry)
    backend = OpenVINONetwork(net, ov, cache=tmp_path)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: the cached OpenVINO network {entry} is not used ("), lines
    assert problem in lines[0] and lines[0].endswith("): removed, converted again")
    x = torch.randn(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    assert (backend.predict_fn()(x) - _probs(net, x)).abs().max().item() < 1e-3  # this network's, not another's
    assert backend.cache_folder == entry and set(read_sealed(entry, entry.name)) == {"model.xml", "model.bin"}

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the rebuilt entry is intact")

    monkeypatch.setattr(openvino_conversion, "convert", no_conversion)
    again = OpenVINONetwork(net, ov, cache=tmp_path)  # the rebuilt entry is used, without a word
    assert capsys.readouterr().err == ""
    assert (again.predict_fn()(x) - _probs(net, x)).abs().max().item() < 1e-3


def test_an_entry_that_cannot_be_removed_or_rewritten_is_skipped(two_entries, tmp_path, monkeypatch, capsys):
    ov = _ov()
    net = _net(0)
    shutil.copytree(two_entries[0], tmp_path, dirs_exist_ok=True)
    _flip_signs(tmp_path / "openvino" / two_entries[1].name)
    capsys.readouterr()
    for module in (openvino_cache, openvino_conversion):  # as on a read-only cache
        monkeypatch.setattr(module, "discard_entry", lambda folder: None)
    backend = OpenVINONetwork(net, ov, cache=tmp_path)
    assert "model.bin differs from its seal" in capsys.readouterr().err
    assert backend.cache_folder is None  # converted in memory, nothing stored
    x = torch.randn(1, 1, 8, 8, 8)
    assert (backend.predict_fn()(x) - _probs(net, x)).abs().max().item() < 1e-3


def test_a_tampered_cache_does_not_change_the_labels_of_a_run(tiny_weights, tmp_path):
    """Two runs of the command line on one case with the OpenVINO backend, the cached model.bin's signs flipped
    between them: the second run says so in one line, converts again and writes the same labels."""
    _ov()
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a_0000.nii.gz", shape_zyx=(16, 48, 48))
    cache = tmp_path / "cache"
    env = {"RUNET_CACHE_DIR": str(cache)}
    args = ["-i", str(tmp_path / "in"), "--weights", str(tiny_weights), "--backend", "openvino"]
    args += ["--precision", "float32", "--phases", "1"]
    first = predict_cli(*args, "-o", str(tmp_path / "first"), env=env)
    assert first.returncode == 0, first.stderr
    (entry,) = (cache / "openvino").iterdir()
    _flip_signs(entry)
    second = predict_cli(*args, "-o", str(tmp_path / "second"), env=env)
    assert second.returncode == 0, second.stderr
    warnings = [ln for ln in second.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        f"warning: the cached OpenVINO network {entry} is not used (model.bin differs from its seal "
        f"({(entry / 'model.bin').stat().st_size:,} bytes, sha256 {warnings[0].split('sha256 ')[1][:12]}...)): "
        "removed, converted again"
    ]
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / d / "a.nii.gz"))) for d in ("first", "second"))
    assert np.array_equal(a, b)


# --- the precision choices ----------------------------------------------------------------------------------------


@pytest.fixture
def timed(monkeypatch) -> list[int]:
    """Measurements made by precision_choice.choose (bfloat16 twice as fast), this process's memo emptied."""
    monkeypatch.setattr(precision_choice, "_MEMO", {})
    calls: list[int] = []
    monkeypatch.setattr(precision_choice, "measure", lambda c: calls.append(1) or {"float32": 2.0, "bfloat16": 1.0})
    return calls


CANDIDATES = {"float32": lambda: None, "bfloat16": lambda: None}


def _stored(cache: Path, key: str = "k", choice: str = "float32") -> Path:
    """A precision.json holding ``choice`` for ``key``, written as choose() writes it."""
    cache.mkdir(exist_ok=True)
    path = cache / "precision.json"
    path.write_text(sealed_document({key: {"choice": choice, "seconds": {"float32": 1.0, "bfloat16": 2.0}}}))
    return path


def _edit_choice(path: Path) -> None:
    path.write_text(path.read_text().replace('"float32"', '"bfloat16"', 1))


def _old_format(path: Path) -> None:
    path.write_text(json.dumps({"k": {"choice": "bfloat16", "seconds": {"float32": 1.0}}}))


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


BAD_FILES = {
    "corrupt": (lambda p: p.write_bytes(os.urandom(300)), "not JSON"),
    "choice edited": (_edit_choice, "its content does not match its sha256"),
    "not sealed": (_old_format, "not a sealed document"),
    "fifo": (_fifo, "precision.json is not a regular file"),
    "huge": (lambda p: p.write_text(" " * (2 << 20)), "precision.json holds more than the 1,048,576 bytes expected"),
}


@pytest.mark.parametrize("bad", BAD_FILES)
def test_a_bad_precision_file_is_ignored_with_one_line(tmp_path, timed, bad):
    path = _stored(tmp_path)
    change, problem = BAD_FILES[bad]
    change(path)
    lines: list[str] = []
    assert choose(CANDIDATES, "k", tmp_path, lines.append) == "bfloat16"  # measured, not the file's float32
    assert timed == [1]
    assert lines[0] == f"warning: {path}: the precision choices stored there are not used ({problem}); measuring again"
    assert len(lines) == 2 and lines[1].startswith("precision auto: bfloat16 (first window:")
    if bad != "fifo":  # replaced by a sealed file holding the new measurement
        assert open_document(path.read_text())["k"]["choice"] == "bfloat16"


def test_a_sealed_entry_that_is_no_valid_choice_is_measured_again(tmp_path, timed):
    path = _stored(tmp_path, choice="float64")
    lines: list[str] = []
    assert choose(CANDIDATES, "k", tmp_path, lines.append) == "bfloat16" and timed == [1]
    assert lines[0] == f"warning: {path}: the precision choice stored for this network is not valid; measuring again"


def test_an_intact_precision_file_is_used(tmp_path, timed):
    _stored(tmp_path)
    lines: list[str] = []
    assert choose(CANDIDATES, "k", tmp_path, lines.append) == "float32" and timed == []
    assert lines == [f"precision auto: float32 (measured earlier on this machine, {tmp_path / 'precision.json'})"]


# --- where the cache lies -------------------------------------------------------------------------------------


def test_a_cache_folder_in_the_input_or_output_folder_is_refused(tmp_path):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (tmp_path / "link").symlink_to(outputs, target_is_directory=True)
    folders = {"input": inputs, "output": outputs}
    for cache, relation, role, folder in [
        (inputs, "is", "input", inputs),
        (inputs / "cache", "lies inside", "input", inputs),
        (outputs, "is", "output", outputs),
        (outputs / "a" / "b", "lies inside", "output", outputs),
        (tmp_path / "link" / "cache", "lies inside", "output", outputs),
    ]:
        with pytest.raises(ValueError) as info:
            check_cache_location(cache, folders)
        assert str(info.value) == (
            f"the cache folder {cache} {relation} the {role} folder {folder}; set $RUNET_CACHE_DIR to a folder "
            "outside it (or to off)"
        )
    for cache in (None, tmp_path / "cache", tmp_path / "in-cache", tmp_path):  # beside, or holding them: fine
        check_cache_location(cache, folders)
    check_cache_location(outputs / "cache", {"input": inputs})


# --- out of memory ----------------------------------------------------------------------------------------------

OPENVINO_ALLOCATION = (
    "Exception from src/inference/src/cpp/core.cpp:117:\\nException from src/inference/src/dev/plugin.cpp:54:\\n"
    "Check 'ptr' failed at src/plugins/intel_cpu/src/cpu_memory.cpp:257:\\nFailed to allocate 5368709120 bytes of "
    "memory\\n\\n\\n"
).replace("\\n", "\n")
TORCH_CPU = (
    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 123456789012 bytes. Error code 12 (Cannot "
    "allocate memory)"
)


def test_allocation_errors_read_out_of_memory_and_the_size():
    assert str(out_of_memory(RuntimeError(OPENVINO_ALLOCATION), "in OpenVINO")) == (
        "out of memory in OpenVINO (5,120.0 MB asked for; RuntimeError: Failed to allocate 5368709120 bytes of memory)"
    )
    bad_alloc = RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nstd::bad_alloc\n")
    assert str(out_of_memory(bad_alloc, "in OpenVINO")) == "out of memory in OpenVINO (RuntimeError: std::bad_alloc)"
    assert (
        str(out_of_memory(RuntimeError(TORCH_CPU)))
        == f"out of memory (117,737.6 MB asked for; RuntimeError: {TORCH_CPU})"
    )
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)")
    assert str(out_of_memory(cuda)).startswith("out of memory (2,048.0 MB asked for; OutOfMemoryError: CUDA out of")
    assert str(out_of_memory(MemoryError())) == "out of memory (MemoryError)"
    assert out_of_memory(RuntimeError("Exception from src/core.cpp:1:\nshape mismatch")) is None
    assert out_of_memory(ValueError("allocate")) is None


def _one_case(tmp_path: Path) -> list[str]:
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a_0000.nii.gz")
    return ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu", "--phases", "1"]


def test_openvino_out_of_memory_fails_the_case_in_one_line(tiny_weights, tmp_path, monkeypatch, capsys):
    _ov()

    def no_memory(self, precision, shape):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nstd::bad_alloc\n")

    monkeypatch.setattr(OpenVINONetwork, "_request", no_memory)
    argv = _one_case(tmp_path) + ["--weights", str(tiny_weights), "--backend", "openvino", "--precision", "float32"]
    assert predict.main(argv) == 1
    failed = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith(f"failed: {tmp_path / 'in' / 'a_0000.nii.gz'}: out of memory in ")
    assert re.fullmatch(
        r".*: out of memory in OpenVINO on a 1x1x\d+x\d+x\d+ window \(RuntimeError: std::bad_alloc\)", failed[0]
    )


def test_torch_cpu_out_of_memory_fails_the_case_in_one_line(tiny_weights, tmp_path, monkeypatch, capsys):
    def no_memory(self, *args, **kwargs):
        raise RuntimeError(TORCH_CPU)

    monkeypatch.setattr(Segmenter, "segment", no_memory)
    assert predict.main(_one_case(tmp_path) + ["--weights", str(tiny_weights), "--backend", "torch"]) == 1
    failed = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("failed:")]
    case = tmp_path / "in" / "a_0000.nii.gz"
    assert failed == [f"failed: {case}: out of memory (117,737.6 MB asked for; RuntimeError: {TORCH_CPU})"]
