"""The patch plan of a volume: the in-plane stride of the polyphase split, chosen from the voxel spacing, and the
options that cut it.

The network learns one physical sampling: FLARE's 512 x 512 scans (0.6-1.0 mm in-plane) at the paper's stride 4 give
sub-volumes of 2.4-4.0 mm voxels, and the shipped weights were trained on that sampling. A scan whose stride-4
sub-volumes fall outside that range (a 3 mm scan sampled at 12 mm, say) is split with the stride whose sub-volumes do
fall inside it, so that the network always sees the voxel size it was trained on.

:func:`plan_patches` is what inference.engine.Segmenter.plan_for runs: the one place where the options become a
PatchPlan.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from inference.checkpoint import SEEN_INPLANE_MM, Sampling
from inference.patching import PatchPlan

STRIDES = (4, 2, 1)


def choose_stride(
    spacing_yx_mm: tuple[float, float], seen_mm: tuple[float, float] = SEEN_INPLANE_MM, strides=STRIDES
) -> int:
    """The largest stride whose strided voxel (stride x mean in-plane spacing, mm) lies in ``seen_mm``.

    When none does, the stride whose strided voxel is closest to the range on a log scale.
    """
    lo, hi = seen_mm
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"seen_mm must be 0 < lo <= hi, got {seen_mm}")
    if not all(math.isfinite(float(v)) and float(v) > 0 for v in spacing_yx_mm):
        raise ValueError(f"in-plane spacing must be finite and > 0, got {spacing_yx_mm}")
    spacing = 0.5 * (float(spacing_yx_mm[0]) + float(spacing_yx_mm[1]))

    def distance(stride: int) -> float:
        voxel = stride * spacing
        return max(math.log(lo / voxel), math.log(voxel / hi), 0.0)

    return min(sorted(strides, reverse=True), key=distance)


def divisors(stride: int) -> tuple[int, ...]:
    """The strides a split at ``stride`` may fall back to, largest first: 4 -> (4, 2, 1)."""
    return tuple(s for s in range(stride, 0, -1) if stride % s == 0)


@dataclass(frozen=True)
class PlanOptions:
    """What the user chooses about cutting a volume (predict's --phases, --overlap, --stride, --short-volume).

    phases: how many in-plane phases run of a split at the checkpoint's Sampling.stride (16, 4 or 1 at stride 4);
        a volume split at a smaller stride runs at most all of that stride's stride**2.
    overlap: fraction of a z-window shared with the next, in [0, 1).
    stride: "auto" (chosen per volume from its in-plane spacing, :func:`choose_stride`) or a fixed stride >= 1.
    short_volume: "fit" or "pad" (see inference.patching.PatchPlan).
    window: z-window depth in slices; None: the checkpoint's Sampling.window.
    """

    phases: int = 16
    overlap: float = 0.5
    stride: int | str = "auto"
    short_volume: str = "fit"
    window: int | None = None

    def __post_init__(self) -> None:
        def whole(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        if not (self.stride == "auto" or whole(self.stride)):
            raise ValueError(f"stride must be 'auto' or an integer >= 1, got {self.stride!r}")
        if not whole(self.phases):
            raise ValueError(f"phases must be an integer >= 1, got {self.phases!r}")
        if not (self.window is None or whole(self.window)):
            raise ValueError(f"window must be an integer >= 1 (slices) or None, got {self.window!r}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.short_volume not in ("pad", "fit"):
            raise ValueError(f"short_volume must be 'pad' or 'fit', got {self.short_volume!r}")


def plan_patches(
    options: PlanOptions, sampling: Sampling, spacing_yx_mm: Sequence[float], size_multiple: int
) -> PatchPlan:
    """The PatchPlan of a volume of in-plane spacing ``spacing_yx_mm`` (mm, y then x) for a network whose sizes
    must be multiples of ``size_multiple``: the stride of ``options`` ("auto": the divisor of the paper's stride
    whose strided voxel lies in ``sampling.inplane_voxel_mm``), ``options.phases`` capped at stride**2, the
    options' window (the sampling's when None), overlap and short-volume policy. ValueError for a combination that
    PatchPlan refuses (a window that is not a multiple of ``size_multiple``, phases that do not divide the stride).
    """
    stride = options.stride
    if stride == "auto":
        stride = choose_stride(tuple(spacing_yx_mm), sampling.inplane_voxel_mm, divisors(sampling.stride))
    return PatchPlan(
        stride=stride,
        phases=min(options.phases, stride * stride),
        window=options.window or sampling.window,
        overlap=options.overlap,
        size_multiple=size_multiple,
        short_volume=options.short_volume,
    )
