"""One case from CT volume to label map: normalization, strided patch inference, post-processing.

Holds the network on its device and falls back on a CUDA out-of-memory error: smaller batches first, then the CPU.
The network runs on torch, or on OpenVINO's CPU runtime (``backend="openvino"``, inference/openvino_backend.py):
the backend is only a different predict_fn for the patching engine.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from inference import precision_choice
from inference.checkpoint import Checkpoint
from inference.cli import log
from inference.device import cpu_supports_bf16
from inference.io import CTVolume
from inference.model import fuse_batchnorm
from inference.openvino_backend import OpenVINONetwork, import_openvino
from inference.patching import PatchPlan, ProgressFn, predict_labels
from inference.postprocess import keep_largest_components
from inference.stride import SEEN_INPLANE_MM, plan_for_spacing
from inference.user_cache import user_cache_dir

BACKENDS = ("auto", "torch", "openvino")


def resolve_backend(name: str, device: torch.device, precision: torch.dtype | None = torch.float32) -> str:
    """ "auto" -> "openvino" on the CPU when the package is installed, else "torch"; "openvino" on a CUDA device
    or with float16 is a ValueError; a missing openvino package falls back to "torch" with one warning."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} ({', '.join(BACKENDS)})")
    if name == "torch" or (name == "auto" and device.type != "cpu"):
        return "torch"
    if device.type != "cpu":
        raise ValueError(f"--backend openvino runs on the CPU only, not on --device {device}")
    if precision == torch.float16:
        if name == "auto":
            return "torch"
        raise ValueError("--precision float16 runs on the torch backend only (openvino: float32 or bfloat16)")
    if import_openvino() is None:
        log("warning: the openvino package is not installed; the network runs on torch")
        return "torch"
    return "openvino"


@dataclass
class Segmenter:
    """A loaded checkpoint on a device, ready to segment volumes."""

    checkpoint: Checkpoint
    device: torch.device
    plan: PatchPlan
    batch_size: int = 2
    precision: torch.dtype | None = torch.float32  # None: measured on the first window (resolve_precision)
    postprocess: bool = True
    fuse: bool = True
    channels_last: bool = True
    stride: int | str | None = None  # None: ``plan`` as given; "auto", 4, 2, 1: per volume (see plan_for)
    backend: str = "torch"  # "torch", "openvino" or "auto" (see resolve_backend)

    def __post_init__(self) -> None:
        """Build the network that runs: batch norms folded into the convolutions (``fuse``), weights in the
        channels-last-3d layout (``channels_last``; oneDNN and cuDNN pick faster kernels for it), on the device;
        with the openvino backend, its conversion of the folded network."""
        self.checkpoint.model.eval()
        if self.fuse:  # only the folded copy goes to the device: one set of weights there
            self.network = fuse_batchnorm(self.checkpoint.model)
        else:
            self.network = self.checkpoint.model
        self.backend = resolve_backend(self.backend, self.device, self.precision)
        self._openvino = OpenVINONetwork(self.network, import_openvino()) if self.backend == "openvino" else None
        self._place_network()

    def _place_network(self) -> None:
        self.network.to(self.device)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last_3d)

    def _predict_fn(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, d, h, w) -> (B, C, d, h, w) probabilities at the segmenter's precision (measured on this first
        window when None) on its backend."""
        if self.precision is None:
            self.precision = self._measure_precision(x[:1])
        return self._run(x, self.precision)

    def _run(self, x: torch.Tensor, precision: torch.dtype) -> torch.Tensor:
        """The network on ``x`` at ``precision``: OpenVINO's, or torch's under autocast below float32."""
        if self._openvino is not None:
            return self._openvino.predict_fn(precision)(x)
        if precision == torch.float32:
            ctx = contextlib.nullcontext()
        else:
            ctx = torch.autocast(self.device.type, dtype=precision)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with ctx:
            return self.network(x)

    def _measure_precision(self, window: torch.Tensor) -> torch.dtype:
        """The faster of float32 and bfloat16 (where computed natively) on this backend, timed on ``window``
        (1, 1, d, h, w) or remembered from an earlier measurement on this machine (inference/precision_choice.py)."""
        if self._openvino is not None:
            engine, threads = f"openvino {self._openvino.version}", self._openvino.threads
            bf16 = self._openvino.supports_bfloat16()
        else:
            engine, threads, bf16 = f"torch {torch.__version__}", torch.get_num_threads(), cpu_supports_bf16()
        dtypes = {"float32": torch.float32, **({"bfloat16": torch.bfloat16} if bf16 else {})}
        candidates = {name: (lambda dt=dt: self._run(window, dt)) for name, dt in dtypes.items()}
        key = precision_choice.choice_key(engine, threads, self.checkpoint.config.widths, tuple(window.shape))
        return precision_choice.choose(candidates, key, user_cache_dir(), log)

    def plan_for(self, volume: CTVolume) -> PatchPlan:
        """The plan this volume runs with: ``plan``, with its stride chosen from the spacing unless stride is None."""
        if self.stride is None:
            return self.plan
        seen_mm = tuple(self.checkpoint.training.get("inplane_voxel_mm", SEEN_INPLANE_MM))
        return plan_for_spacing(self.plan, volume.spacing_zyx[1:], self.stride, seen_mm)

    def predict(
        self, volume: np.ndarray, plan: PatchPlan | None = None, progress: ProgressFn | None = None
    ) -> np.ndarray:
        """(D, H, W) HU array in canonical orientation -> (D, H, W) uint8 labels (before post-processing).

        ``plan`` defaults to the segmenter's own; ``progress`` gets (windows done, windows in all) after every
        network call (it starts again from 0 when an out-of-memory error makes the volume run again)."""
        norm = self.checkpoint.normalization
        x = norm.apply(volume)
        while True:
            try:
                return predict_labels(
                    x,
                    self._predict_fn,
                    self.checkpoint.config.num_classes,
                    plan or self.plan,
                    batch_size=self.batch_size,
                    device=self.device,
                    pad_value=norm.air_value,
                    progress=progress,
                )
            except torch.OutOfMemoryError:
                if not self._back_off():
                    raise

    def _back_off(self) -> bool:
        """After an out-of-memory error: halve the batch, or leave CUDA for the CPU; False when nothing is left."""
        if self.device.type != "cuda":
            return False
        torch.cuda.empty_cache()
        if self.batch_size > 1:
            self.batch_size //= 2
            log(f"warning: CUDA out of memory; retrying with batch size {self.batch_size}")
        else:
            self.device = torch.device("cpu")
            self.precision = torch.float32  # the measured choice is not worth its time after an OOM
            self.checkpoint.model.to(self.device)
            self._place_network()
            log("warning: CUDA out of memory at batch size 1; continuing on the CPU")
        return True

    def segment(self, volume: CTVolume, progress: ProgressFn | None = None) -> np.ndarray:
        """A canonical CT volume -> (D, H, W) uint8 label map in canonical orientation, post-processed.

        ``progress``: see :meth:`predict`."""
        labels = self.predict(volume.image, self.plan_for(volume), progress)
        return keep_largest_components(labels) if self.postprocess else labels
