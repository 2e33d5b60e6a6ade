"""The network backends: OpenVINO against torch (probabilities, labels), the converted-model cache, the fallback
when openvino is missing, and the --backend usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.metrics import dice
from inference import engine, engine_options, openvino_cache, openvino_conversion, predict
from inference.checkpoint import load_checkpoint
from inference.ct_io import read_ct
from inference.engine import Segmenter
from inference.engine_options import resolve_backend
from inference.model import RUNet, UNetConfig, fuse_batchnorm
from inference.openvino_backend import OpenVINONetwork, cpu_threads
from inference.openvino_conversion import network_digest, traceable_regularized_softmax
from inference.plan import PlanOptions
from inference.regularized_softmax import regularized_softmax

ov = pytest.importorskip("openvino")
TINY = UNetConfig(widths=(2, 4, 8))
REPO = Path(__file__).resolve().parents[1]


def _net(seed: int, config: UNetConfig = TINY) -> RUNet:
    torch.manual_seed(seed)
    model = RUNet(config).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics and lambda, so that folding and the TV term matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        model.activation.lam.fill_(0.7)
    return fuse_batchnorm(model)


def _torch_probs(net: RUNet, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (1, 5, 1, 7, 2)])
def test_traceable_regularized_softmax_matches_the_layer(shape):
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3
    for lam, step in ((0.7, 1.0), (2.0, 0.3), (0.0, 1.0)):
        expected = regularized_softmax(logits, lam, step)
        assert torch.allclose(traceable_regularized_softmax(logits, lam, step), expected, atol=1e-6, rtol=0)


def test_openvino_float32_matches_torch_on_random_weights(tmp_path):
    net = _net(0)
    x = torch.randn(2, 1, 8, 12, 16, generator=torch.Generator().manual_seed(2))
    probs = OpenVINONetwork(net, ov, cache=tmp_path).predict_fn(torch.float32)(x)
    assert probs.dtype == torch.float32 and probs.shape == (2, 5, 8, 12, 16)
    assert (probs - _torch_probs(net, x)).abs().max().item() < 1e-3


def test_openvino_float32_matches_torch_on_the_shipped_weights(tmp_path):
    net = fuse_batchnorm(load_checkpoint().model)
    x = torch.rand(1, 1, 16, 64, 48, generator=torch.Generator().manual_seed(3)) * 2 - 1
    probs = OpenVINONetwork(net, ov, cache=tmp_path).predict_fn(torch.float32)(x)
    assert (probs - _torch_probs(net, x)).abs().max().item() < 1e-3


def test_a_window_shape_not_seen_before_compiles(tmp_path):
    net = _net(1)
    backend = OpenVINONetwork(net, ov, cache=tmp_path)
    run = backend.predict_fn(torch.float32)
    for shape in ((2, 1, 8, 8, 8), (1, 1, 12, 16, 8), (2, 1, 8, 8, 8)):
        x = torch.randn(shape)
        assert (run(x) - _torch_probs(net, x)).abs().max().item() < 1e-3
    assert backend.compiled_keys == [("f32", (2, 1, 8, 8, 8)), ("f32", (1, 1, 12, 16, 8))]  # each shape once
    backend.MAX_COMPILED = 2
    run(torch.randn(1, 1, 4, 4, 4))  # a third shape releases the least recently used one, (1, 1, 12, 16, 8)
    assert list(backend._compiled) == [("f32", (2, 1, 8, 8, 8)), ("f32", (1, 1, 4, 4, 4))]


def test_the_cache_is_keyed_by_the_weights(tmp_path, monkeypatch):
    first, second = _net(2), _net(3)
    assert network_digest(first) != network_digest(second)
    assert network_digest(first) == network_digest(_net(2))
    a = OpenVINONetwork(first, ov, cache=tmp_path)
    b = OpenVINONetwork(second, ov, cache=tmp_path)
    assert a.cache_folder is not None and b.cache_folder is not None and a.cache_folder != b.cache_folder
    assert sorted(p.name for p in (tmp_path / "openvino").iterdir()) == sorted(
        [a.cache_folder.name, b.cache_folder.name]
    )
    assert ov.get_version().split("-")[0] in a.cache_folder.name
    x = torch.randn(1, 1, 8, 8, 8)
    assert (b.predict_fn()(x) - _torch_probs(second, x)).abs().max().item() < 1e-3  # its own weights, not first's

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache holds this network")

    monkeypatch.setattr(openvino_conversion, "convert", no_conversion)
    again = OpenVINONetwork(_net(2), ov, cache=tmp_path)
    assert again.cache_folder == a.cache_folder
    assert (again.predict_fn()(x) - _torch_probs(first, x)).abs().max().item() < 1e-3


def test_the_conversion_version_is_part_of_the_cache_key(tmp_path, monkeypatch):
    net = _net(5)
    first = OpenVINONetwork(net, ov, cache=tmp_path)
    conversions = []
    convert = openvino_conversion.convert
    monkeypatch.setattr(openvino_conversion, "convert", lambda *a: conversions.append(1) or convert(*a))
    assert OpenVINONetwork(net, ov, cache=tmp_path).cache_folder == first.cache_folder and not conversions
    monkeypatch.setattr(openvino_cache, "CONVERSION_VERSION", openvino_cache.CONVERSION_VERSION + 1)
    bumped = OpenVINONetwork(net, ov, cache=tmp_path)
    assert conversions == [1]  # the network stored under the old version is not reused
    assert bumped.cache_folder is not None and bumped.cache_folder != first.cache_folder
    assert bumped.cache_folder.name.endswith(f"-c{openvino_cache.CONVERSION_VERSION}")


@pytest.mark.parametrize("lam", [1e-12, 0.7])
def test_the_converted_graph_holds_the_tv_term_only_where_lambda_matters(tmp_path, lam):
    torch.manual_seed(6)
    net = fuse_batchnorm(RUNet(UNetConfig(widths=(2, 4, 8), lam_init=lam)).eval())  # the regularized layer kept
    kinds = [op.get_type_name() for op in openvino_conversion.convert(net, ov).get_ordered_ops()]
    assert kinds.count("Softmax") == (1 if lam < 1e-9 else 2)
    assert kinds.count("Pad") == (0 if lam < 1e-9 else 6)  # six one-plane shifts, no Slice chains
    assert "Slice" not in kinds and "StridedSlice" not in kinds
    x = torch.randn(1, 1, 8, 16, 16, generator=torch.Generator().manual_seed(7))
    probs = OpenVINONetwork(net, ov, cache=tmp_path).predict_fn(torch.float32)(x)
    assert (probs - _torch_probs(net, x)).abs().max().item() < 1e-3


def test_an_unwritable_cache_is_skipped(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    backend = OpenVINONetwork(_net(4), ov, cache=blocker / "cache")
    assert backend.cache_folder is None
    assert backend.predict_fn()(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 5, 8, 8, 8)


def test_threads_default_to_the_affinity_and_the_environment_overrides(monkeypatch):
    monkeypatch.delenv("RUNET_THREADS", raising=False)
    assert cpu_threads() == len(__import__("os").sched_getaffinity(0))
    monkeypatch.setenv("RUNET_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.setenv("RUNET_THREADS", "zero")
    with pytest.raises(ValueError, match="RUNET_THREADS"):
        cpu_threads()


def test_backend_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("auto", cpu) == "openvino"
    assert resolve_backend("auto", cuda) == "torch"
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cpu, torch.float16) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("openvino", cuda)
    with pytest.raises(ValueError, match="float16"):
        resolve_backend("openvino", cpu, torch.float16)
    with pytest.raises(ValueError, match="backend must be one of auto, torch, openvino, got 'onnx'"):
        resolve_backend("onnx", cpu)


def test_a_missing_openvino_package_falls_back_to_torch_with_one_warning(monkeypatch, capsys, tiny_weights, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    assert resolve_backend("openvino", torch.device("cpu")) == "torch"
    assert capsys.readouterr().err.count("warning: the openvino package is not installed") == 1
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    _write_case(inputs / "a_0000.nii.gz")
    code = predict.main(
        ["-i", str(inputs), "-o", str(outputs), "--weights", str(tiny_weights), "--backend", "openvino"]
    )
    err = capsys.readouterr().err
    assert code == 0 and (outputs / "a.nii.gz").is_file()
    assert err.count("warning: the openvino package is not installed") == 1
    assert "backend torch" in err


def test_openvino_on_cuda_is_a_usage_error(monkeypatch, capsys, tiny_weights, tmp_path):
    monkeypatch.setattr(engine_options, "device_name", lambda name: "cuda")  # as if a GPU were here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_case(inputs / "a_0000.nii.gz")
    argv = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights)]
    assert predict.main([*argv, "--backend", "openvino", "--device", "cuda"]) == 2
    assert "--backend openvino runs on the CPU only" in capsys.readouterr().err
    monkeypatch.setenv("RUNET_BACKEND", "onnx")
    with pytest.raises(SystemExit) as exit_code:
        predict.main(argv)
    assert exit_code.value.code == 2
    assert "--backend must be one of auto, torch, openvino, got 'onnx'" in capsys.readouterr().err


def test_the_backend_option_reads_its_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNET_BACKEND", "torch")
    io = ["-i", str(tmp_path), "-o", str(tmp_path / "out")]  # -i and -o are required
    assert predict.parse_args(io).backend == "torch"
    assert predict.parse_args([*io, "--backend", "openvino"]).backend == "openvino"


def _write_case(path, shape_zyx=(6, 20, 24)) -> None:
    import SimpleITK as sitk

    arr = np.random.default_rng(0).integers(-1000, 400, size=shape_zyx).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(path))


REAL_CASES = [
    "FLARE22C_0044",
    "TSEX_0002",
    pytest.param("DCMQI_0001", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case", REAL_CASES)
def test_openvino_labels_equal_torch_on_real_cases(shared_data, case):
    checkpoint = load_checkpoint()
    volume = read_ct(shared_data / f"{case}_0000.nii.gz")
    labels = {}
    for backend, precision in (("torch", torch.float32), ("openvino", torch.float32), ("openvino", torch.bfloat16)):
        seg = Segmenter(checkpoint, torch.device("cpu"), precision=precision, backend=backend)
        assert seg.backend == backend
        labels[backend, precision] = seg.segment(volume.image, volume.spacing_zyx)
    reference = labels["torch", torch.float32]
    assert np.array_equal(labels["openvino", torch.float32], reference)
    for organ in np.unique(reference)[1:]:  # bfloat16 rounds differently: DSC per organ against float32
        assert dice(labels["openvino", torch.bfloat16] == organ, reference == organ) >= 0.99, organ


def test_segmenter_measures_auto_precision_once_on_its_first_window(monkeypatch, tmp_path, tiny_weights):
    monkeypatch.setenv("RUNET_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(OpenVINONetwork, "supports_bfloat16", lambda self: True)
    monkeypatch.setattr(engine.precision_choice, "_MEMO", {})
    timed = []

    def fake_measure(candidates):
        timed.append({name: tuple(fn().shape) for name, fn in candidates.items()})
        return {"float32": 1.0, "bfloat16": 0.5}

    monkeypatch.setattr(engine.precision_choice, "measure", fake_measure)
    checkpoint = load_checkpoint(tiny_weights)
    for _ in range(2):
        options = PlanOptions(stride=4, window=16)
        seg = Segmenter(
            checkpoint, torch.device("cpu"), options, precision=None, postprocess="none", backend="openvino"
        )
        seg.segment(np.zeros((20, 32, 32), np.float32), (1.0, 1.0, 1.0))
        assert seg.precision == "bfloat16"
    # one window (batch 1) of the first call, at both precisions, once: the second segmenter found the choice
    assert timed == [{"float32": (1, 5, 16, 16, 16), "bfloat16": (1, 5, 16, 16, 16)}]


def test_cli_parses_a_cpu_run_without_loading_torch(tiny_weights, tmp_path):
    """The CLI's modules and the checks of a CPU command line leave torch unloaded (it costs most of the start-up
    of a run on OpenVINO); a run loads it only to convert the weights (tests/test_warm_cache.py)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_case(inputs / "a_0000.nii.gz")
    code = (
        "import sys\n"
        "from inference import predict\n"
        "predict.parse_args(sys.argv[1:])\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    argv = ["-i", str(inputs), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights), "--device", "cpu"]
    for device in ("cpu", "auto"):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv[:-1], device], env=env, capture_output=True, text=True, check=True
        )
        assert proc.stdout.strip() == "[]", (device, proc.stdout, proc.stderr)
