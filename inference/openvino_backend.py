"""The network on OpenVINO's CPU runtime: a predict_fn computing what the torch network computes, faster on CPUs.

The network as the engine runs it (batch norms folded, in eval mode) is converted in memory by OpenVINO's PyTorch
front end (a trace of the torch module; nothing is downloaded or sent), regularized softmax included, into an
OpenVINO model with a dynamic (B, 1, D, H, W) input: inference/openvino_conversion.py, the one part that needs
torch, imported only when a network is converted or looked up by its weights. The model is compiled once per
distinct input shape and precision ("f32" or "bf16" inference precision; a static shape ran faster than the dynamic
model here), on as many threads as the process may use (``os.sched_getaffinity``; ``$RUNET_THREADS`` overrides),
and called on numpy arrays.

The converted model is kept in the user cache folder (:func:`inference.user_cache.user_cache_dir`) under the
sha256 of the network's config and weights and the OpenVINO version, so a different checkpoint or OpenVINO release
never reuses it; it is never written next to the input or output images. A cache that cannot be written is skipped.
Each entry is sealed with the sha256 of its own files and its key (:mod:`inference.cache_seal`) and read back only
when the seal holds: an entry whose files changed, came from another entry or that OpenVINO cannot read is removed
and converted again, with one warning line.

Beside the entries, ``openvino-checkpoints/`` holds one sealed record per verified checkpoint file (by its sha256,
the OpenVINO version and the conversion version): the entry its network converts to and the checkpoint's metadata
(:func:`inference.checkpoint.checkpoint_metadata`). A later run of that file reads both from there instead of
loading the weights, folding the batch norms and hashing the network; a record that is missing, fails its seal or
names an entry that does not hold sends the run down the full path. inference/openvino_cache.py reads and writes
the entries and records, without torch.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from inference.device import precision_name
from inference.openvino_cache import ov_version
from inference.out_of_memory import out_of_memory
from inference.user_cache import user_cache_dir

if TYPE_CHECKING:
    import torch

    from inference.model import RUNet

THREADS_ENV = "RUNET_THREADS"
OV_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}
"""The CPU plugin's inference precision of each precision the backend runs, by name."""


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


class OpenVINONetwork:
    """A RUNet on OpenVINO's CPU plugin: ``predict_fn(precision)`` returns a :data:`inference.patching.PredictFn`.

    ``network``: the network to run (eval mode; pass the batch-norm-folded copy), float32 weights; None with
    ``converted``, (model, its cache entry) as inference.openvino_cache.recall_checkpoint gives them, which then
    runs as it is.
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
        self.version = ov_version(ov)
        self.threads = threads or cpu_threads()
        self.core = ov.Core()
        if converted is not None:
            self.model, self.cache_folder = converted
        else:
            from inference.openvino_conversion import cached_model

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
        """(B, 1, d, h, w) float32 numpy array or CPU tensor -> (B, C, d, h, w) float32 probabilities of the same
        kind, at ``precision``."""

        def run(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
            if isinstance(x, np.ndarray):
                return self._infer(precision, x)
            import torch  # a tensor in: torch is loaded already

            if x.device.type != "cpu":
                raise ValueError(f"the openvino backend runs on the CPU; got a tensor on {x.device}")
            return torch.from_numpy(self._infer(precision, x.detach().numpy()))

        return run

    def _infer(self, precision: str | torch.dtype, arr: np.ndarray) -> np.ndarray:
        """The compiled network on a (B, 1, d, h, w) array (made contiguous float32 here), as a new array."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        try:
            request = self._request(precision, tuple(arr.shape))
            out = request.infer({0: arr}, share_inputs=True, share_outputs=False)
        except RuntimeError as exc:  # OpenVINO's first line names a source file; the cause is further down
            oom = out_of_memory(exc, f"in OpenVINO on a {'x'.join(map(str, arr.shape))} window")
            if oom is None:
                raise
            raise oom from exc
        return out[0]
