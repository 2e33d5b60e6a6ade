"""Where the network runs and at what precision: one policy for inference and training.

Device names: "auto" (CUDA when available, else the CPU), "cuda", "cuda:N" or "cpu". Precision names: "auto",
"float32", "bfloat16" or "float16". A resolved precision is a name (:func:`precision_of`; the OpenVINO backend runs
on names) or a torch dtype (:func:`resolve_precision`; torch's backend and training); None means "not fixed yet"
(inference measures it on its first window, see inference/precision_choice.py).

Importing this module does not import torch: a run on the OpenVINO backend may never need it (torch is imported by
the functions that ask it something, when they are called).
"""

from __future__ import annotations

import glob
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("float32", "bfloat16", "float16")
"""The fixed precisions, by name: each the name of its torch dtype (``getattr(torch, name)``)."""
PRECISION_NAMES = ("auto", *PRECISIONS)


GPU_DRIVER_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia[0-9]*", "/dev/kfd")
"""What a loaded GPU driver leaves on a Linux machine (NVIDIA's, and the ROCm kernel driver's /dev/kfd)."""


def gpu_possible() -> bool:
    """False only when no GPU driver is loaded here: none of :data:`GPU_DRIVER_FILES` exists."""
    return any(glob.glob(pattern) for pattern in GPU_DRIVER_FILES)


def device_name(name: str = "auto") -> str:
    """The device a run takes by name: "auto" -> "cuda" when available, else "cpu"; "cuda" fails clearly without a
    GPU. "auto" asks torch whether CUDA is available unless torch is not loaded yet and no GPU driver is loaded
    (:func:`gpu_possible`): then it is "cpu" without importing torch (a CPU run on OpenVINO never needs it)."""
    if name not in ("auto", "cpu") and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r} (auto, cuda, cuda:N or cpu)")
    if name == "cpu" or (name == "auto" and "torch" not in sys.modules and not gpu_possible()):
        return "cpu"
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    return name


def select_device(name: str = "auto") -> torch.device:
    """The torch device of :func:`device_name`."""
    import torch

    return torch.device(device_name(name))


def device_type(device: str | torch.device) -> str:
    """ "cpu" or "cuda": the kind of a device given by name or as a torch device."""
    return str(device).split(":")[0]


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 convolutions beat float32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    import torch

    return torch.backends.mkldnn.is_available()


def precision_of(name: str, device: str | torch.device) -> str | None:
    """ "auto" -> "bfloat16" on CUDA devices that support it ("float32" on others); on the CPU None, which the
    Segmenter resolves on its first window to the faster of float32 and bfloat16 (inference/precision_choice.py).
    A fixed precision is its own name. Only "auto" on CUDA imports torch."""
    if name == "auto" and device_type(device) == "cpu":
        return None
    if name == "auto":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r} (auto, {', '.join(PRECISIONS)})")
    return name


def torch_dtype(precision: str | torch.dtype | None) -> torch.dtype | None:
    """The torch dtype of a precision given by name (or already a dtype); None stays None (to be measured)."""
    if precision is None or not isinstance(precision, str):
        return precision
    import torch

    return getattr(torch, precision)


def resolve_precision(name: str, device: str | torch.device) -> torch.dtype | None:
    """The torch dtype of :func:`precision_of` (None: measured on the CPU's first window)."""
    return torch_dtype(precision_of(name, device))


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """Training's mixed precision: the autocast dtype of :func:`resolve_precision`, None for float32 (no autocast).

    One difference: "auto" on a CUDA device without bfloat16 trains in float16 (with loss scaling), where inference
    stays in float32; on the CPU "auto" trains in float32 (nothing is measured)."""
    import torch

    dtype = resolve_precision(name, device)
    if name == "auto" and device_type(device) == "cuda" and dtype == torch.float32:
        return torch.float16
    return None if dtype in (None, torch.float32) else dtype


def autocast_name(dtype: torch.dtype | None) -> str:
    """Training's precision in words: "float32" (no autocast, None) or "bfloat16 autocast" (:func:`autocast_dtype`)."""
    return "float32" if dtype is None else f"{precision_name(dtype)} autocast"


def precision_name(precision: str | torch.dtype | None) -> str:
    """ "float32", "bfloat16", ... (of a name or a torch dtype) or "auto" for a precision still to be measured
    (None)."""
    return "auto" if precision is None else str(precision).removeprefix("torch.")
