"""Where the network runs and at what precision: one policy for inference and training.

Device names: "auto" (CUDA when available, else the CPU), "cuda", "cuda:N" or "cpu". Precision names: "auto",
"float32", "bfloat16" or "float16". A precision is a torch dtype; None means "not fixed yet" (inference measures
it on its first window, see inference/precision_choice.py).

Importing this module does not import torch: a run on the OpenVINO backend may never need it (torch is imported by
the functions that ask it something, when they are called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("float32", "bfloat16", "float16")
"""The fixed precisions, by name: each the name of its torch dtype (``getattr(torch, name)``)."""
PRECISION_NAMES = ("auto", *PRECISIONS)


def select_device(name: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" fails clearly without a GPU."""
    import torch

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
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return False
    import torch

    return torch.backends.mkldnn.is_available()


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """ "auto" -> bfloat16 on CUDA devices that support it (float32 on others); on the CPU None, which the
    Segmenter resolves on its first window to the faster of float32 and bfloat16 (inference/precision_choice.py)."""
    if name == "auto" and device.type == "cpu":
        return None
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r} (auto, {', '.join(PRECISIONS)})")
    return getattr(torch, name)


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """Training's mixed precision: the autocast dtype of :func:`resolve_precision`, None for float32 (no autocast).

    One difference: "auto" on a CUDA device without bfloat16 trains in float16 (with loss scaling), where inference
    stays in float32; on the CPU "auto" trains in float32 (nothing is measured)."""
    import torch

    dtype = resolve_precision(name, device)
    if name == "auto" and device.type == "cuda" and dtype == torch.float32:
        return torch.float16
    return None if dtype in (None, torch.float32) else dtype


def autocast_name(dtype: torch.dtype | None) -> str:
    """Training's precision in words: "float32" (no autocast, None) or "bfloat16 autocast" (:func:`autocast_dtype`)."""
    return "float32" if dtype is None else f"{precision_name(dtype)} autocast"


def precision_name(precision: torch.dtype | None) -> str:
    """ "float32", "bfloat16", ... or "auto" for a precision still to be measured (None)."""
    return "auto" if precision is None else str(precision).removeprefix("torch.")
