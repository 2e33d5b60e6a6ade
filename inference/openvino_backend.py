"""The network on OpenVINO's CPU runtime: a predict_fn computing what the torch network computes, faster on CPUs.

The network as the engine runs it (batch norms folded, in eval mode) is converted in memory by OpenVINO's PyTorch
front end (a trace of the torch module; nothing is downloaded or sent), regularized softmax included, into an
OpenVINO model with a dynamic (B, 1, D, H, W) input. It is compiled once per distinct input shape and precision
("f32" or "bf16" inference precision; a static shape ran faster than the dynamic model here), on as many threads as
the process may use (``os.sched_getaffinity``; ``$RUNET_THREADS`` overrides).

The converted model is kept in the user cache folder (:func:`inference.user_cache.user_cache_dir`) under the
sha256 of the network's config and weights and the OpenVINO version, so a different checkpoint or OpenVINO release
never reuses it; it is never written next to the input or output images. A cache that cannot be written is skipped.
Each entry is sealed with the sha256 of its own files and its key (:mod:`inference.cache_seal`) and read back only
when the seal holds: an entry whose files changed, came from another entry or that OpenVINO cannot read is removed
and converted again, with one warning line.

Beside the entries, ``openvino-checkpoints/`` holds one sealed record per verified checkpoint file (by its sha256,
the OpenVINO version and the conversion version): the entry its network converts to and the checkpoint's metadata
(:func:`inference.checkpoint.checkpoint_metadata`). A later run of that file reads both from there
(:func:`recall_checkpoint`) instead of loading the weights, folding the batch norms and hashing the network; a
record that is missing, fails its seal or names an entry that does not hold sends the run down the full path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.cache_seal import SealError, open_document, read_regular, read_sealed, seal, sealed_document
from inference.checkpoint import Checkpoint, checkpoint_metadata, checkpoint_of_metadata
from inference.cli import log
from inference.device import precision_name
from inference.model import RUNet
from inference.out_of_memory import out_of_memory
from inference.regularized_softmax import RegularizedSoftmax
from inference.user_cache import user_cache_dir

THREADS_ENV = "RUNET_THREADS"
CHECKPOINTS = "openvino-checkpoints"  # the cache's folder of checkpoint records, beside openvino/
CONVERSION_VERSION = 2  # part of the cache key: bump when the traced graph changes (2: lambda* bound, Pad shifts)
"""Part of the key of every entry and checkpoint record. Bump it when the traced graph changes, and also when the
network handed to the conversion changes for the same checkpoint file (batch-norm folding, the plain-softmax
bound): a checkpoint record points at its entry by this number, not by the folded network's digest."""
OV_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}
"""The CPU plugin's inference precision of each precision the backend runs, by name."""

# F.pad widths (last axis first) of (B, C, D, H, W) that shift the data one plane along z, y, x: AHEAD drops the first
# plane and repeats the last (x[i] -> x[i + 1], the last plane kept), BEHIND adds a zero plane before and drops the
# last (x[i] -> x[i - 1], 0 at i = 0). A negative width crops, so each shift is one Pad node and no Slice.
_AHEAD = {2: (0, 0, 0, 0, -1, 1), 3: (0, 0, -1, 1, 0, 0), 4: (-1, 1, 0, 0, 0, 0)}
_BEHIND = {2: (0, 0, 0, 0, 1, -1), 3: (0, 0, 1, -1, 0, 0), 4: (1, -1, 0, 0, 0, 0)}


def import_openvino() -> ModuleType | None:
    """The ``openvino`` module, or None when the package is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def cpu_threads() -> int:
    """Threads for inference: ``$RUNET_THREADS`` when set, else every CPU this process may run on."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def network_digest(network: nn.Module) -> str:
    """Hex sha256 of a network's config, parameters and buffers (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    config = getattr(network, "config", None)
    h.update(json.dumps(config.to_dict() if config is not None else None, sort_keys=True, default=str).encode())
    for name, tensor in sorted(network.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def traceable_regularized_softmax(logits: torch.Tensor, lam: float, step: float) -> torch.Tensor:
    """:func:`inference.regularized_softmax.regularized_softmax`, written with out-of-place ops only, as graph
    converters need: the same arithmetic on (B, C, D, H, W) float logits, the same result to rounding.

    Every shift is a single pad with a negative width (:data:`_AHEAD`, :data:`_BEHIND`), so the graph holds six Pad
    nodes and one fused element-wise chain between the two softmaxes. The forward difference of the last plane is
    that plane minus its own copy, exactly 0 (Neumann), and eta is 0 there, so dropping it in the backward shift
    loses nothing. Slice-and-zero-pad chains (a Slice, a subtraction and a Pad per axis), whose Slice and Pad run
    OpenVINO's reference kernels, took 1.6-3.2x as long per batch of two 128^3 windows on a shared 2-core CPU in
    four runs of ``bench/bench_tv.py`` (0.8x in a fifth, under a load of 8)."""
    s = torch.softmax(logits, dim=1)
    grads = [F.pad(s, _AHEAD[dim], mode="replicate") - s for dim in (2, 3, 4)]
    sq = grads[0] * grads[0] + grads[1] * grads[1] + grads[2] * grads[2]
    factor = -step / torch.sqrt(torch.clamp(sq * (step * step), min=1.0))
    eta = [g * factor for g in grads]
    div = eta[0] + eta[1] + eta[2]
    for e, dim in zip(eta, (2, 3, 4)):
        div = div - F.pad(e, _BEHIND[dim])
    return torch.softmax(logits - lam * div, dim=1)


class _Traceable(nn.Module):
    """(B, 1, D, H, W) -> (B, C, D, H, W) probabilities of a RUNet, with a traceable last activation: a plain
    softmax where the network's lambda is under the bound at which the regularized one equals it to float32
    rounding (:func:`inference.regularized_softmax.negligible_lambda`)."""

    def __init__(self, network: RUNet) -> None:
        super().__init__()
        self.network = network
        act = network.activation
        regularized = isinstance(act, RegularizedSoftmax) and not act.is_plain_softmax
        self.lam_step = (act.lam_value, act.step) if regularized else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network.logits(x)
        if self.lam_step is None:
            return torch.softmax(logits, dim=1)
        return traceable_regularized_softmax(logits, *self.lam_step)


def convert_module(module: nn.Module, example: torch.Tensor, dynamic: list[int], ov: ModuleType) -> object:
    """An ``openvino.Model`` of a one-input float32 CPU module, traced on ``example``, input shape ``dynamic``
    (-1 for a dynamic axis).

    Traced by OpenVINO's PyTorch front end directly rather than through ``openvino.convert_model``, whose
    conversion tool reports usage over the network unless the user declined it: inference sends nothing anywhere.
    The same graph transformations as ``convert_model`` follow.
    """
    from openvino._offline_transformations import apply_moc_transformations
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: intended
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, which the decoder calls
        decoder = TorchScriptPythonDecoder(module.eval(), example_input=(example,))
        front_end = FrontEndManager().load_by_framework("pytorch")
        graph = front_end.load(decoder)
        graph.set_partial_shape(graph.get_place_by_input_index(0), ov.PartialShape(dynamic))
        model = front_end.convert(graph)
    apply_moc_transformations(model, cf=False, smart_reshape=True)
    return model


def convert(network: RUNet, ov: ModuleType) -> object:
    """An ``openvino.Model`` of ``network`` (eval mode, float32) with a dynamic (B, 1, D, H, W) input."""
    m, c = network.config.size_multiple, network.config.in_channels
    module = _Traceable(network.float().cpu().eval())
    return convert_module(module, torch.zeros(1, c, m, 2 * m, 2 * m), [-1, c, -1, -1, -1], ov)


def compile_config(precision: str | torch.dtype, threads: int) -> dict:
    """The CPU plugin's settings: inference precision (by name or torch dtype), threads, one stream for the lowest
    latency per call."""
    name = precision_name(precision)
    if name not in OV_PRECISIONS:
        raise ValueError(f"the openvino backend runs float32 or bfloat16, not {name}")
    return {
        "INFERENCE_PRECISION_HINT": OV_PRECISIONS[name],
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }


def cached_model(
    network: RUNet, ov: ModuleType, cache: Path | None, warn: Callable[[str], None] = log
) -> tuple[object, Path | None]:
    """The converted model, read from ``cache`` when it holds this network's conversion under an intact seal, else
    converted (and stored there, sealed, when it can be). An entry that fails its seal or that OpenVINO cannot read
    is removed, with one line to ``warn``. Returns (model, the folder it came from or went to; None without a
    cache or when it cannot be written)."""
    folder = None
    if cache is not None:
        version = ov.get_version().split("-")[0]
        folder = cache / "openvino" / f"{network_digest(network)}-ov{version}-c{CONVERSION_VERSION}"
        if folder.exists() or folder.is_symlink():
            try:
                return _read_entry(folder, ov), folder
            except SealError as exc:
                warn(f"warning: the cached OpenVINO network {folder} is not used ({exc}): removed, converted again")
                _discard(folder)
    model = convert(network, ov)
    if folder is not None and not _store(model, ov, folder):
        folder = None
    return model, folder


def _record_path(cache: Path, sha256: str, ov: ModuleType) -> Path:
    version = ov.get_version().split("-")[0]
    return cache / CHECKPOINTS / f"{sha256}-ov{version}-c{CONVERSION_VERSION}.json"


def remember_checkpoint(checkpoint: Checkpoint, entry: Path, ov: ModuleType) -> None:
    """Record that the verified checkpoint file of ``checkpoint.sha256`` converts to the cache entry ``entry`` (a
    folder of ``<cache>/openvino``), with its metadata; nothing when the record cannot be written."""
    path = _record_path(entry.parent.parent, str(checkpoint.sha256), ov)
    text = sealed_document({"entry": entry.name, "checkpoint": checkpoint_metadata(checkpoint)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def recall_checkpoint(cache: Path | None, sha256: str, ov: ModuleType) -> tuple[Checkpoint, object, Path] | None:
    """(the checkpoint without its weights, its converted model, the entry it came from) of the checkpoint file of
    ``sha256`` as :func:`remember_checkpoint` recorded it; None when there is no cache or no record, or the record
    or its entry does not hold (the caller then loads and converts as usual, which repairs the entry)."""
    if cache is None:
        return None
    try:
        content = open_document(read_regular(_record_path(cache, sha256, ov), max_bytes=1 << 20))
        name = content["entry"]
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            return None
        folder = cache / "openvino" / name
        checkpoint = checkpoint_of_metadata(content["checkpoint"])
        model = _read_entry(folder, ov)
    except (SealError, KeyError, TypeError, ValueError):
        return None
    checkpoint.sha256 = sha256
    return checkpoint, model, folder


def _read_entry(folder: Path, ov: ModuleType) -> object:
    """The model of a sealed cache entry, read from the very bytes its seal was checked on; SealError when the
    seal does not hold or OpenVINO cannot read them."""
    files = read_sealed(folder, folder.name)
    if set(files) != {"model.xml", "model.bin"}:
        raise SealError(f"holds {sorted(files)}, not model.xml and model.bin")
    try:
        weights = ov.Tensor(np.frombuffer(files["model.bin"], dtype=np.uint8), shared_memory=False)  # a copy
        return ov.Core().read_model(model=files["model.xml"].decode(), weights=weights)
    except (RuntimeError, ValueError) as exc:  # OpenVINO raises RuntimeError; not UTF-8 is a ValueError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise SealError(f"OpenVINO cannot read it: {first[:200]}") from None


def _discard(folder: Path) -> None:
    """Remove a cache entry (a folder, or whatever else lies under its name), as far as it can be removed."""
    if folder.is_symlink() or not folder.is_dir():
        with contextlib.suppress(OSError):
            folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)


def _store(model: object, ov: ModuleType, folder: Path) -> bool:
    """Save ``model`` as folder/model.{xml,bin} (float32 weights) with its seal, written aside and renamed; False
    when it cannot be written (the cache is then skipped)."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        seal(tmp, folder.name)
        if folder.exists() or folder.is_symlink():
            _discard(folder)
        tmp.rename(folder)
        return True
    except OSError:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        return False


class OpenVINONetwork:
    """A RUNet on OpenVINO's CPU plugin: ``predict_fn(precision)`` returns a :data:`inference.patching.PredictFn`.

    ``network``: the network to run (eval mode; pass the batch-norm-folded copy), float32 weights; None with
    ``converted``, (model, its cache entry) as :func:`recall_checkpoint` gives them, which then runs as it is.
    ``threads``: inference threads (default :func:`cpu_threads`). ``cache``: folder of converted models (default
    :func:`user_cache_dir`; None for none). At most ``MAX_COMPILED`` compilations (each holds its own activation
    memory) are kept, the least recently used one released first; compiling one takes a fraction of a second.
    """

    MAX_COMPILED = 4

    def __init__(
        self,
        network: RUNet | None,
        ov: ModuleType,
        threads: int | None = None,
        cache: Path | None | str = "default",
        converted: tuple[object, Path] | None = None,
    ) -> None:
        self.ov = ov
        self.version = ov.get_version().split("-")[0]
        self.threads = threads or cpu_threads()
        self.core = ov.Core()
        if converted is not None:
            self.model, self.cache_folder = converted
        else:
            self.model, self.cache_folder = cached_model(network, ov, user_cache_dir() if cache == "default" else cache)
        self._compiled: OrderedDict[tuple[str, tuple[int, ...]], object] = OrderedDict()
        self.compiled_keys: list[tuple[str, tuple[int, ...]]] = []  # every (precision, shape) compiled, in order

    def supports_bfloat16(self) -> bool:
        """True when the CPU plugin computes bfloat16 natively here."""
        return "BF16" in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")

    def _request(self, precision: str | torch.dtype, shape: tuple[int, ...]) -> object:
        """An infer request of the model compiled for ``shape`` at ``precision``, compiled on first use."""
        config = compile_config(precision, self.threads)
        key = (config["INFERENCE_PRECISION_HINT"], shape)
        if key in self._compiled:
            self._compiled.move_to_end(key)
        else:
            while len(self._compiled) >= self.MAX_COMPILED:
                self._compiled.popitem(last=False)
            model = self.model.clone()
            model.reshape(list(shape))
            self._compiled[key] = self.core.compile_model(model, "CPU", config).create_infer_request()
            self.compiled_keys.append(key)
        return self._compiled[key]

    def predict_fn(self, precision: str | torch.dtype = "float32"):
        """(B, 1, d, h, w) float32 CPU tensor -> (B, C, d, h, w) float32 probabilities, at ``precision``."""

        def run(x: torch.Tensor) -> torch.Tensor:
            if x.device.type != "cpu":
                raise ValueError(f"the openvino backend runs on the CPU; got a tensor on {x.device}")
            arr = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
            try:
                request = self._request(precision, tuple(arr.shape))
                out = request.infer({0: arr}, share_inputs=True, share_outputs=False)
            except RuntimeError as exc:  # OpenVINO's first line names a source file; the cause is further down
                oom = out_of_memory(exc, f"in OpenVINO on a {'x'.join(map(str, arr.shape))} window")
                if oom is None:
                    raise
                raise oom from exc
            return torch.from_numpy(out[0])

        return run
