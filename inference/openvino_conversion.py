"""The torch network converted to an OpenVINO model, and that conversion kept in the user cache.

The network as the engine runs it (batch norms folded, in eval mode) is converted in memory by OpenVINO's PyTorch
front end (a trace of the torch module; nothing is downloaded or sent), regularized softmax included, into an
OpenVINO model with a dynamic (B, 1, D, H, W) input, and stored as an entry of the user cache
(inference/openvino_cache.py) under the sha256 of the network's config and weights (:func:`network_digest`). Only a
run that loads the weights imports this module (and torch); a warm run reads the entry alone.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from inference.cache_seal import SealError
from inference.cli import log
from inference.model import RUNet
from inference.openvino_cache import discard_entry, entry_folder, read_entry, store_entry
from inference.regularized_softmax import RegularizedSoftmax

# F.pad widths (last axis first) of (B, C, D, H, W) that shift the data one plane along z, y, x: AHEAD drops the first
# plane and repeats the last (x[i] -> x[i + 1], the last plane kept), BEHIND adds a zero plane before and drops the
# last (x[i] -> x[i - 1], 0 at i = 0). A negative width crops, so each shift is one Pad node and no Slice.
_AHEAD = {2: (0, 0, 0, 0, -1, 1), 3: (0, 0, -1, 1, 0, 0), 4: (-1, 1, 0, 0, 0, 0)}
_BEHIND = {2: (0, 0, 0, 0, 1, -1), 3: (0, 0, 1, -1, 0, 0), 4: (1, -1, 0, 0, 0, 0)}


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


def cached_model(
    network: RUNet, ov: ModuleType, cache: Path | None, warn: Callable[[str], None] = log
) -> tuple[object, Path | None]:
    """The converted model, read from ``cache`` when it holds this network's conversion under an intact seal, else
    converted (and stored there, sealed, when it can be). An entry that fails its seal or that OpenVINO cannot read
    is removed, with one line to ``warn``. Returns (model, the folder it came from or went to; None without a
    cache or when it cannot be written)."""
    folder = None
    if cache is not None:
        folder = entry_folder(cache, network_digest(network), ov)
        if folder.exists() or folder.is_symlink():
            try:
                return read_entry(folder, ov), folder
            except SealError as exc:
                warn(f"warning: the cached OpenVINO network {folder} is not used ({exc}): removed, converted again")
                discard_entry(folder)
    model = convert(network, ov)
    if folder is not None and not store_entry(model, ov, folder):
        folder = None
    return model, folder
