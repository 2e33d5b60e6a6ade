"""The in-plane stride of the polyphase split, chosen from the voxel spacing.

The network learns one physical sampling: FLARE's 512 x 512 scans (0.6-1.0 mm in-plane) at the paper's stride 4 give
sub-volumes of 2.4-4.0 mm voxels, and the shipped weights were trained on that sampling. A scan whose stride-4
sub-volumes fall outside that range (a 3 mm scan sampled at 12 mm, say) is split with the stride whose sub-volumes do
fall inside it, so that the network always sees the voxel size it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import replace

from inference.patching import PatchPlan

SEEN_INPLANE_MM = (2.4, 4.0)
"""In-plane voxel size (mm) of the sub-volumes the network was trained on, when the checkpoint does not say."""
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


def plan_for_spacing(
    plan: PatchPlan, spacing_yx_mm: tuple[float, float], stride: int | str = "auto", seen_mm=SEEN_INPLANE_MM
) -> PatchPlan:
    """``plan`` with the stride for this spacing ("auto") or a fixed one; phases capped at stride**2."""
    s = choose_stride(spacing_yx_mm, seen_mm) if stride == "auto" else int(stride)
    return replace(plan, stride=s, phases=min(plan.phases, s * s))
