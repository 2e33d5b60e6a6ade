"""Intensity normalization of CT volumes, as the checkpoint records it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Normalization:
    """Clip Hounsfield units to [hu_min, hu_max] and map that window linearly onto [-1, 1]."""

    hu_min: float = -200.0
    hu_max: float = 300.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.hu_min) and np.isfinite(self.hu_max) and self.hu_max > self.hu_min):
            raise ValueError(f"need finite hu_min < hu_max, got {self.hu_min}, {self.hu_max}")

    def to_dict(self) -> dict:
        return {"kind": "hu_window", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        if d.get("kind", "hu_window") != "hu_window":
            raise ValueError(f"unknown normalization kind {d.get('kind')!r}")
        return cls(hu_min=float(d["hu_min"]), hu_max=float(d["hu_max"]))

    @property
    def air_value(self) -> float:
        """The normalized value of air (-1000 HU): what padding outside the field of view uses."""
        return float(self.apply(np.array([-1000.0]))[0])

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Any-shape array of HU -> float32 array of the same shape with values in [-1, 1]."""
        center = 0.5 * (self.hu_max + self.hu_min)
        half = 0.5 * (self.hu_max - self.hu_min)
        out = np.clip(image.astype(np.float32, copy=False), self.hu_min, self.hu_max)
        out -= np.float32(center)
        out *= np.float32(1.0 / half)
        return out
