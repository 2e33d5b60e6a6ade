"""Helpers shared by the speed benchmarks: machine header, markdown tables, timing, phantom cases, networks.

Every benchmark measures its ratios within one run (the machine may be shared), prints one markdown table and
writes it under bench/results/ (git-ignored).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from inference.checkpoint import DEFAULT_WEIGHTS, load_checkpoint  # noqa: E402
from inference.model import RUNet, UNetConfig  # noqa: E402
from inference.precision_choice import cpu_model  # noqa: E402
from inference.task import INPUT_SUFFIX  # noqa: E402

TINY_CONFIG = UNetConfig(widths=(4, 8, 16))
"""A network small enough for the --quick smoke runs (size multiple 4)."""


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or platform.processor())."""
    name = cpu_model()
    return name if name != "unknown" else (platform.processor() or platform.machine())


def machine_line(device: str = "cpu") -> str:
    """One line naming the machine: CPU, cores, torch threads, load average, and the GPU if one is used."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {load:.1f} at start"
    )
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats are printed with 3 significant decimals, text left as it is."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "n/a" if v != v else (f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}")
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(title: str, body: str, out: Path) -> str:
    """Print ``title`` + ``body`` and write them to ``out``; returns the text."""
    text = f"{title}\n\n{body}\n"
    print(text, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], repeats: int = 1, device: str = "cpu") -> float:
    """Best wall-clock seconds of ``fn()`` over ``repeats`` calls (device work included)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class TimedFn:
    """Wraps a predict_fn to add up the seconds spent in it (device work included) and count the calls."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    device: str = "cpu"
    seconds: float = 0.0
    calls: int = 0
    first_call_at: float | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        sync(self.device)
        t0 = time.perf_counter()
        if self.first_call_at is None:
            self.first_call_at = t0
        out = self.fn(x)
        sync(self.device)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def network(source: str, seed: int = 0) -> RUNet:
    """The network to time, in eval mode on the CPU.

    source: "checkpoint" (weights/runet.pt, with its config, whatever it holds), "default" (UNetConfig() with
    random weights: the paper's size), or "tiny" (:data:`TINY_CONFIG`, random weights; for smoke runs).
    """
    if source == "checkpoint":
        return load_checkpoint(DEFAULT_WEIGHTS).model.eval()
    torch.manual_seed(seed)
    config = {"default": UNetConfig(), "tiny": TINY_CONFIG}[source]
    return RUNet(config).eval()


def phantom_case(folder: Path, depth: int, size: int = 512, seed: int = 7) -> tuple[Path, Path]:
    """A CT phantom of size x size x depth voxels (xyz) as <folder>/<name>_0000.nii.gz and its label map
    <folder>/labels/<name>.nii.gz; made once and reused (files are named by size, depth and seed)."""
    import SimpleITK as sitk

    from phantom.generate import generate_case

    name = f"P{size}x{depth}s{seed}"
    image_path, label_path = folder / f"{name}{INPUT_SUFFIX}", folder / "labels" / f"{name}.nii.gz"
    if not (image_path.exists() and label_path.exists()):
        label_path.parent.mkdir(parents=True, exist_ok=True)
        image, label = generate_case(seed, size_xy=size, slices=depth, spacing=(0.8, 0.8, 1.5))
        sitk.WriteImage(label, str(label_path), useCompression=True)
        sitk.WriteImage(image, str(image_path), useCompression=True)
    return image_path, label_path


def dice(a, b, labels: Sequence[int] = (1, 2, 3, 4)) -> float:
    """Mean of evaluation.metrics.dice over the labels (1.0 for a label absent from both maps)."""
    from evaluation.metrics import dice as mask_dice

    return float(sum(mask_dice(a == v, b == v) for v in labels) / len(labels))
