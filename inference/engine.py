"""One case from CT volume to label map: normalization, strided patch inference, post-processing.

Holds the network on its device and falls back on a CUDA out-of-memory error: smaller batches first, then the CPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from inference.checkpoint import Checkpoint
from inference.cli import log
from inference.io import CTVolume
from inference.model import fuse_batchnorm
from inference.patching import PatchPlan, ProgressFn, predict_labels
from inference.postprocess import keep_largest_components
from inference.stride import SEEN_INPLANE_MM, plan_for_spacing

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def select_device(name: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" fails clearly without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r} (auto, cuda, cuda:N or cpu)")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 convolutions beat float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.backends.mkldnn.is_available()


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """ "auto" -> bfloat16 on CUDA devices and CPUs that support it natively, float32 otherwise."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r} (auto, {', '.join(PRECISIONS)})")
    return PRECISIONS[name]


@dataclass
class Segmenter:
    """A loaded checkpoint on a device, ready to segment volumes."""

    checkpoint: Checkpoint
    device: torch.device
    plan: PatchPlan
    batch_size: int = 2
    precision: torch.dtype = torch.float32
    postprocess: bool = True
    fuse: bool = True
    channels_last: bool = True
    stride: int | str | None = None  # None: ``plan`` as given; "auto", 4, 2, 1: per volume (see plan_for)

    def __post_init__(self) -> None:
        """Build the network that runs: batch norms folded into the convolutions (``fuse``), weights in the
        channels-last-3d layout (``channels_last``; oneDNN and cuDNN pick faster kernels for it), on the device."""
        self.checkpoint.model.eval()
        if self.fuse:  # only the folded copy goes to the device: one set of weights there
            self.network = fuse_batchnorm(self.checkpoint.model)
        else:
            self.network = self.checkpoint.model
        self._place_network()

    def _place_network(self) -> None:
        self.network.to(self.device)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last_3d)

    def _predict_fn(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, d, h, w) -> (B, C, d, h, w) probabilities, under autocast when a lower precision is asked for."""
        if self.precision == torch.float32:
            ctx = contextlib.nullcontext()
        else:
            ctx = torch.autocast(self.device.type, dtype=self.precision)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with ctx:
            return self.network(x)

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
            self.precision = torch.float32
            self.checkpoint.model.to(self.device)
            self._place_network()
            log("warning: CUDA out of memory at batch size 1; continuing on the CPU")
        return True

    def segment(self, volume: CTVolume, progress: ProgressFn | None = None) -> np.ndarray:
        """A canonical CT volume -> (D, H, W) uint8 label map in canonical orientation, post-processed.

        ``progress``: see :meth:`predict`."""
        labels = self.predict(volume.image, self.plan_for(volume), progress)
        return keep_largest_components(labels) if self.postprocess else labels
