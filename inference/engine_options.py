"""How the network runs: the user's choice of device, precision, backend, batch size and post-processing rule
(:class:`EngineOptions`, shared by every command line through :func:`add_engine_options`), and the one place
where those names become a device, a precision and a backend (:meth:`EngineOptions.resolve`).

The options' meaning is documented once, in README.md ("Options"); --help repeats it in short. Importing this module
does not import torch (a command line parses its options without it); resolving the options does only where torch
has to be asked (a GPU may be there, inference.device.device_name; "auto" precision on CUDA).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.cli import log
from inference.device import PRECISION_NAMES, device_name, device_type, precision_name, precision_of
from inference.distributed import Launch, process_device
from inference.options import check_choice, check_whole
from inference.postprocess import DEFAULT_RULE, RULES

if TYPE_CHECKING:
    import torch

ENGINES = ("torch", "openvino")
"""The backends a Segmenter runs the network on."""
BACKENDS = ("auto", *ENGINES)
"""--backend's choices; "auto": openvino on the CPU when installed, else torch."""


@dataclass(frozen=True)
class ResolvedEngine:
    """What :meth:`EngineOptions.resolve` made of the names: the device ("cpu", "cuda" or "cuda:N"), the precision
    ("float32", "bfloat16" or "float16", or None: to be measured on the first window), and the backend that runs
    ("torch" or "openvino")."""

    device: str
    precision: str | None
    backend: str


@dataclass(frozen=True)
class EngineOptions:
    """Where and how the network runs, as the user names it (predict's --device, --precision, --backend,
    --batch-size and --postprocess).

    device: "auto", "cpu", "cuda" or "cuda:N" (checked when resolved: whether CUDA is there depends on the machine).
    precision: one of inference.device.PRECISION_NAMES. backend: one of :data:`BACKENDS`.
    batch_size: z-windows per network call, >= 1. postprocess: one of inference.postprocess.RULES.

    OptionError (a ValueError naming the field) for a value that is not one of the choices.
    """

    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    batch_size: int = 2
    postprocess: str = DEFAULT_RULE

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISION_NAMES)
        check_choice("backend", self.backend, BACKENDS)
        check_whole("batch_size", self.batch_size)
        check_choice("postprocess", self.postprocess, RULES)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EngineOptions:
        """The options of a command line built with :func:`add_engine_options`."""
        return cls(args.device, args.precision, args.backend, args.batch_size, args.postprocess)

    def resolve(self, launch: Launch = Launch()) -> ResolvedEngine:
        """The device (under torchrun the process's own GPU, inference.distributed.process_device), the precision
        (inference.device.precision_of) and the backend (:func:`resolve_backend`) this process runs with.
        ValueError for a device that is not there or a backend that cannot run on it."""
        device = device_name(process_device(self.device, launch))
        precision = precision_of(self.precision, device)
        return ResolvedEngine(device, precision, resolve_backend(self.backend, device, precision))


def resolve_backend(name: str, device: str | torch.device, precision: str | torch.dtype | None = None) -> str:
    """ "auto" -> "openvino" on the CPU when the package is installed, else "torch"; "openvino" on a CUDA device
    or with float16 is a ValueError; a missing openvino package falls back to "torch" with one warning.
    ``precision``: the resolved one (None: measured on the first window)."""
    from inference.openvino_backend import import_openvino

    check_choice("backend", name, BACKENDS)
    if name == "torch" or (name == "auto" and device_type(device) != "cpu"):
        return "torch"
    if device_type(device) != "cpu":
        raise ValueError(f"--backend openvino runs on the CPU only, not on --device {device}")
    if precision_name(precision) == "float16":
        if name == "auto":
            return "torch"
        raise ValueError("--precision float16 runs on the torch backend only (openvino: float32 or bfloat16)")
    if import_openvino() is None:
        log("warning: the openvino package is not installed; the network runs on torch")
        return "torch"
    return "openvino"


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """--device, --precision, --backend, --batch-size and --postprocess (read back by
    :meth:`EngineOptions.from_args`)."""
    p.add_argument(
        "--device", default="auto", metavar="NAME", help="cuda, cuda:N or cpu; auto: CUDA when available, else cpu"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_NAMES,
        help="network arithmetic; auto: bfloat16 on CUDA, and on the CPU the faster of float32 and bfloat16 for the "
        "backend, timed on the first window and remembered per machine in the user cache folder",
    )
    p.add_argument(
        "--backend",
        default=os.environ.get("RUNET_BACKEND", "auto"),
        choices=BACKENDS,
        help="network engine; auto: openvino on the CPU when installed, else torch ($RUNET_BACKEND sets the default)",
    )
    p.add_argument("--batch-size", type=int, default=2, metavar="N", help="z-windows per network call")
    p.add_argument(
        "--postprocess",
        default=DEFAULT_RULE,
        choices=RULES,
        help="flare: keep the largest component of liver, spleen, pancreas and three of kidney; anatomy: the same, "
        "but the liver keeps its most cranial large component and the spleen none far below it; none: no filter",
    )
