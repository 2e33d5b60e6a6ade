"""The network's config (:class:`UNetConfig`), saved in every checkpoint: read without torch, which only the
network itself (inference/model.py) needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint.

    widths: channels per resolution level, finest first; len(widths) - 1 poolings.
    norm: "batch" or "instance" normalization after each convolution.
    attention: gate the skip connections with attention gates (Oktay et al. 2018).
    regularized_softmax: use the TV-regularized softmax as the last activation (else a plain softmax).
    tv_step: the fixed dual step s = tau * lambda; lam_init: initial lambda (> 0 is reachable, 0 becomes 1e-12);
    lam_learnable: lambda is trained (else fixed at lam_init); tv_iterations: primal-dual iterations (the paper: 1).
    """

    in_channels: int = 1
    num_classes: int = 5
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    norm: str = "batch"
    attention: bool = True
    regularized_softmax: bool = True
    tv_step: float = 1.0
    lam_init: float = 1.0
    lam_learnable: bool = True
    tv_iterations: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths needs at least 2 positive entries, got {self.widths}")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {self.norm!r}")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError("in_channels must be >= 1 and num_classes >= 2")
        if self.tv_iterations < 1:
            raise ValueError(f"tv_iterations must be >= 1, got {self.tv_iterations}")

    @property
    def size_multiple(self) -> int:
        """Every spatial input size must be a multiple of this (2 ** number of poolings)."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """The config of ``to_dict``; the ``extra`` entry of older checkpoints (an unused, always empty dict) is
        dropped."""
        return cls(**{k: v for k, v in d.items() if k != "extra"})
