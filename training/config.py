"""Training options as one dataclass (saved in every checkpoint) and its command line.

    python -m training.train --data DIR [--out RUN] [options]

Defaults are the paper's recipe: the full network (UNetConfig()), 128 x 128 x 128 patches of stride 4, batch 2,
Adam at a fixed learning rate 0.01, 50 epochs of one patch per training case. Running the same command again
continues a run from RUN/last.pt.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from inference.cli import UsageParser
from inference.device import PRECISION_NAMES
from inference.distributed import launch_from_env
from inference.model import UNetConfig
from inference.preprocess import Normalization
from training.losses import DICE_FORMS

NESTED: dict[str, type] = {"network": UNetConfig, "window": Normalization}
"""TrainConfig's fields that are configs of their own: their fields are options of the command line (flat)."""
FIXED = ("in_channels", "num_classes")
"""UNetConfig fields that are not options: one CT channel in, the task's five labels out."""


def nested_options(kind: type) -> list[Field]:
    """The fields of a nested config (UNetConfig, Normalization) that are options."""
    return [f for f in fields(kind) if f.name not in FIXED]


@dataclass(init=False)
class TrainConfig:
    data: str = ""  # FLARE-layout folder (imagesTr/labelsTr, TrainingImg/TrainingMask, or flat)
    out: str = "runs/runet"  # run folder: last.pt, best.pt, SHA256SUMS, log.csv, curves.png
    cache: str = ""  # decoded-array cache; default <out>/cache
    network: UNetConfig = field(default_factory=UNetConfig)  # options --widths ... --tv-iterations
    window: Normalization = field(default_factory=Normalization)  # intensity window: options --hu-min, --hu-max
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
    eps: float = 1e-5  # soft Dice smoothing, in voxels
    dice: str = "paper"  # soft Dice form: paper (as printed) or smooth (training/losses.py)
    precision: str = "auto"  # auto (bf16 on CUDA when supported), float32, bfloat16, float16
    seed: int = 0
    workers: int = 2
    threads: int = 0  # torch CPU threads; 0: leave torch's default
    device: str = "auto"
    resume: bool = True  # continue from <out>/last.pt when it exists
    init: str = ""  # start a new run from this checkpoint's weights (fine-tuning); its config and window must match
    max_steps: int = 0  # stop after this many optimizer steps in total (0: no limit); for tests and timing

    def __init__(self, **options: Any) -> None:
        """Options by name, as on the command line: the network's (widths, norm, ...) and the window's (hu_min,
        hu_max) flat, or whole as ``network=UNetConfig(...)``, ``window=Normalization(...)``. Unset ones take their
        defaults; TypeError for an unknown name, ValueError for a bad value."""
        for f in fields(self):
            setattr(self, f.name, options.pop(f.name) if f.name in options else _default(f))
        for name, kind in NESTED.items():
            flat = {f.name: options.pop(f.name) for f in nested_options(kind) if f.name in options}
            setattr(self, name, replace(getattr(self, name), **flat))
        if options:
            raise TypeError(f"unknown TrainConfig options: {', '.join(sorted(options))}")
        self.__post_init__()

    def __post_init__(self) -> None:
        self.patch = tuple(int(p) for p in self.patch)
        if len(self.patch) != 3:
            raise ValueError(f"patch must be (depth, height, width), got {self.patch}")
        m = self.network.size_multiple
        if any(p % m for p in self.patch):
            raise ValueError(f"patch sizes {self.patch} must be multiples of {m} (2 ** poolings)")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0 or self.val_every < 1:
            raise ValueError("batch_size >= 1, epochs >= 0, lr > 0 and val_every >= 1 are required")
        if self.dice not in DICE_FORMS:
            raise ValueError(f"unknown Dice form {self.dice!r}; choose one of {', '.join(DICE_FORMS)}")
        if self.precision not in PRECISION_NAMES:
            raise ValueError(f"unknown precision {self.precision!r}")

    def __getattr__(self, name: str) -> Any:
        """A nested config's option read flat: ``cfg.widths`` is ``cfg.network.widths``, ``cfg.hu_min`` is
        ``cfg.window.hu_min`` (called only for names that are not attributes of TrainConfig itself)."""
        for part, kind in NESTED.items():
            if part in self.__dict__ and name in {f.name for f in nested_options(kind)}:
                return getattr(self.__dict__[part], name)
        raise AttributeError(f"'TrainConfig' object has no attribute {name!r}")

    def to_dict(self) -> dict:
        """Plain values (saved in checkpoints): the network and the window as their own dicts."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d |= {"network": self.network.to_dict(), "window": self.window.to_dict()}
        d["patch"], d["val_cases"] = list(self.patch), list(self.val_cases)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of ``to_dict``, or of the flat dict that older checkpoints hold (the network's and the
        window's fields beside the others)."""
        d = dict(d)
        if isinstance(d.get("network"), dict):
            d["network"] = UNetConfig.from_dict(d["network"])
        if isinstance(d.get("window"), dict):
            d["window"] = Normalization.from_dict(d["window"])
        return cls(**d)


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def option_fields() -> list[Field]:
    """The command line's options in order: TrainConfig's fields, with the nested configs' options in their place."""
    out: list[Field] = []
    for f in fields(TrainConfig):
        out += nested_options(NESTED[f.name]) if f.name in NESTED else [f]
    return out


HELP: dict[str, str] = {
    "data": "FLARE-layout folder: imagesTr/labelsTr, TrainingImg/TrainingMask, or images and labels side by side",
    "out": "run folder: last.pt, best.pt, SHA256SUMS, log.csv, steps.csv, curves.png",
    "cache": "folder of the decoded-array cache; empty: <out>/cache",
    "widths": "channels per resolution level, finest first (len - 1 poolings)",
    "norm": "normalization after each convolution: batch or instance",
    "attention": "attention gates on the skip connections",
    "regularized_softmax": "TV-regularized softmax as the last activation (--no-regularized-softmax: plain softmax)",
    "tv_step": "the regularized softmax's fixed dual step",
    "lam_init": "initial lambda (the fixed value with --no-lam-learnable)",
    "lam_learnable": "train lambda (stored as softplus^-1(lambda)); --no-lam-learnable keeps it at --lam-init",
    "tv_iterations": "primal-dual iterations of the regularized softmax (the paper: 1)",
    "hu_min": "lower end of the HU window mapped onto [-1, 1]",
    "hu_max": "upper end of the HU window mapped onto [-1, 1]",
    "patch": "patch depth, height, width, in voxels after the in-plane stride",
    "stride": "in-plane stride of the patches I[k:k+depth, i::stride, j::stride]",
    "samples_per_epoch": "patches per epoch; 0: one per training case",
    "val_fraction": "fraction of the cases held out for validation (drawn with --seed)",
    "val_cases": "validation case names (instead of --val-fraction)",
    "val_every": "validate every N epochs (and after the last)",
    "val_max_cases": "validate on at most N cases; 0: all",
    "epochs": "epochs in all (a resumed run continues up to this number)",
    "batch_size": "patches per step and process",
    "lr": "Adam's learning rate (fixed)",
    "eps": "soft Dice smoothing, in voxels",
    "dice": "soft Dice form: paper (1 - 2(I+eps)/(M+U+eps), as printed; reaches -1 on absent classes) or smooth "
    "(1 - (2I+eps)/(M+U+eps), never below 0)",
    "precision": "auto (bfloat16 on CUDA when supported, else float16 there; float32 on the CPU), float32, "
    "bfloat16 or float16",
    "seed": "seed of the validation split, the initial weights and the patch draws",
    "workers": "DataLoader worker processes that cut patches",
    "threads": "torch CPU threads; 0: torch's default",
    "device": "auto (CUDA when available), cuda, cuda:N or cpu; under torchrun each process takes its own GPU",
    "resume": "continue from <out>/last.pt when it exists (--no-resume starts over)",
    "init": "start a new run from this checkpoint's weights (fine-tuning); its config and HU window must match",
    "max_steps": "stop after this many optimizer steps in all; 0: no limit",
}
"""One line of --help per option (option_fields)."""
PATHS = ("data", "out", "cache", "init")


def option_name(field_name: str) -> str:
    """The command-line option of a field: ``samples_per_epoch`` -> ``--samples-per-epoch`` (booleans also take
    ``--no-...``)."""
    return "--" + field_name.replace("_", "-")


def options_for(wanted: object, built: object) -> str:
    """The options that turn dataclass ``built`` (a TrainConfig's network or window) into ``wanted``, for the fields
    that differ, as :func:`parse_args` reads them: ``--widths 8 16 32 64 128 --norm instance``, ``--no-attention``."""
    parts = []
    for f in fields(wanted):
        value = getattr(wanted, f.name)
        if value == getattr(built, f.name):
            continue
        if isinstance(value, bool):
            parts.append(option_name(f.name) if value else "--no-" + option_name(f.name)[2:])
        elif isinstance(value, (tuple, list)):
            parts.append(" ".join([option_name(f.name), *map(str, value)]))
        else:
            parts.append(f"{option_name(f.name)} {value}")
    return " ".join(parts)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command line -> TrainConfig: one --option per field (underscores as dashes; booleans as --x / --no-x)."""
    p = UsageParser(prog="python -m training.train", description=__doc__)
    defaults = TrainConfig()
    for f in option_fields():
        name = option_name(f.name)
        value = getattr(defaults, f.name)
        kw = {"default": value, "help": HELP[f.name]}
        if isinstance(value, bool):
            p.add_argument(name, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(value, tuple):
            p.add_argument(name, type=int, nargs="+", metavar="N", **kw)
        elif isinstance(value, list):
            p.add_argument(name, nargs="*", metavar="NAME", **kw)
        else:
            metavar = {int: "N", float: "X"}.get(type(value), "PATH" if f.name in PATHS else "NAME")
            p.add_argument(name, type=type(value), metavar=metavar, required=f.name == "data", **kw)
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        p.error(f"--data {args.data}: not a folder")
    try:
        launch_from_env()  # checked here to be a usage error; training.train takes it again when it joins
    except ValueError as exc:
        p.error(str(exc))
    try:
        return TrainConfig(**vars(args))
    except ValueError as exc:
        p.error(str(exc))
