"""Training options as one dataclass (saved in every checkpoint) and its command line.

Defaults are the paper's recipe: the full network (UNetConfig()), 128 x 128 x 128 patches of stride 4, batch 2,
Adam at a fixed learning rate 0.01, 50 epochs of one patch per training case.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from inference.model import UNetConfig
from inference.preprocess import Normalization


@dataclass
class TrainConfig:
    data: str = ""  # FLARE-layout folder (imagesTr/labelsTr, TrainingImg/TrainingMask, or flat)
    out: str = "runs/runet"  # run folder: last.pt, best.pt, SHA256SUMS, log.csv, curves.png
    cache: str = ""  # decoded-array cache; default <out>/cache
    # network: inference.model.UNetConfig's fields, with its defaults
    widths: tuple[int, ...] = UNetConfig.widths
    norm: str = UNetConfig.norm
    attention: bool = UNetConfig.attention
    regularized_softmax: bool = UNetConfig.regularized_softmax
    tv_step: float = UNetConfig.tv_step
    lam_init: float = UNetConfig.lam_init
    lam_learnable: bool = UNetConfig.lam_learnable
    tv_iterations: int = UNetConfig.tv_iterations
    # data and patches (intensity window: inference.preprocess.Normalization's defaults)
    hu_min: float = Normalization.hu_min
    hu_max: float = Normalization.hu_max
    patch: tuple[int, int, int] = (128, 128, 128)  # depth, height, width after the stride
    stride: int = 4
    samples_per_epoch: int = 0  # patches per epoch; 0: one per training case
    val_fraction: float = 0.1
    val_cases: list[str] = field(default_factory=list)
    val_every: int = 1
    val_max_cases: int = 0  # 0: all validation cases
    # optimization
    epochs: int = 50
    batch_size: int = 2  # per process
    lr: float = 0.01
    eps: float = 1e-5  # soft Dice smoothing
    precision: str = "auto"  # auto (bf16 on CUDA when supported), float32, bfloat16, float16
    seed: int = 0
    workers: int = 2
    threads: int = 0  # torch CPU threads; 0: leave torch's default
    device: str = "auto"
    resume: bool = True  # continue from <out>/last.pt when it exists
    init: str = ""  # start a new run from this checkpoint's weights (fine-tuning); its config and window must match
    max_steps: int = 0  # stop after this many optimizer steps in total (0: no limit); for tests and timing

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)
        self.patch = tuple(int(p) for p in self.patch)
        if len(self.patch) != 3:
            raise ValueError(f"patch must be (depth, height, width), got {self.patch}")
        m = 2 ** (len(self.widths) - 1)
        if any(p % m for p in self.patch):
            raise ValueError(f"patch sizes {self.patch} must be multiples of {m} (2 ** poolings)")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0 or self.val_every < 1:
            raise ValueError("batch_size >= 1, epochs >= 0, lr > 0 and val_every >= 1 are required")
        if self.precision not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"unknown precision {self.precision!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"], d["patch"] = list(self.widths), list(self.patch)
        return d


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command line -> TrainConfig: one --option per field (underscores as dashes; booleans as --x / --no-x)."""
    p = argparse.ArgumentParser(prog="python -m training.train", description="Train RUnet on a FLARE-layout folder.")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        name = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(name, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, tuple):
            p.add_argument(name, type=int, nargs="+", default=value)
        elif isinstance(value, list):
            p.add_argument(name, nargs="*", default=value)
        else:
            p.add_argument(name, type=type(value), default=value)
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data is required")
    if not Path(args.data).is_dir():
        p.error(f"--data {args.data}: not a folder")
    try:
        return TrainConfig(**vars(args))
    except ValueError as exc:
        p.error(str(exc))
