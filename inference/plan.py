"""The patch plan of a volume: how the network was trained to see CT (:class:`Sampling`, stored in the checkpoint),
what the user chooses about cutting a volume (:class:`PlanOptions`), and how one volume is cut (:class:`PatchPlan`),
put together by :func:`plan_patches` from the volume's in-plane spacing.

The network learns one physical sampling: FLARE's 512 x 512 scans (0.6-1.0 mm in-plane) at the paper's stride 4 give
sub-volumes of 2.4-4.0 mm voxels, and the shipped weights were trained on that sampling. A scan whose stride-4
sub-volumes fall outside that range (a 3 mm scan sampled at 12 mm, say) is split with the stride whose sub-volumes do
fall inside it (:func:`choose_stride`), so that the network always sees the voxel size it was trained on.

The option choices (:data:`PHASES`, :data:`STRIDE_CHOICES`, :data:`SHORT_VOLUMES`) are defined here once; the
command lines use them as argparse ``choices``. Running a plan is inference/patching.py's job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from inference.options import OptionError, check_choice, check_overlap, check_whole, is_whole

STRIDES = (4, 2, 1)
"""The in-plane strides a volume may be split with: the paper's 4 and its divisors."""
STRIDE_CHOICES = ("auto", *(str(s) for s in STRIDES))
"""--stride's choices: "auto" (chosen per volume from its spacing) or a fixed stride."""
PHASES = (16, 4, 1)
"""--phases' choices: how many of the stride**2 in-plane phases run (at the paper's stride 4)."""
SHORT_VOLUMES = ("pad", "fit")
"""--short-volume's choices for a volume of fewer slices than one window (see :class:`PatchPlan`)."""

SEEN_INPLANE_MM = (2.4, 4.0)
"""In-plane voxel size (mm) of the sub-volumes the network was trained on, when the checkpoint does not say."""


# --- Sampling: how the network sees a volume (stored in the checkpoint) ----------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How the network was trained to see CT, which inference reproduces (:func:`plan_patches`).

    inplane_voxel_mm: (lo, hi), the in-plane voxel size in mm of the strided sub-volumes the network was trained
        on; the "auto" stride keeps a scan's strided voxel (stride x in-plane spacing) in this range.
    stride: the paper's in-plane stride: the largest stride inference splits a volume with (its divisors, 4, 2 and
        1, are the others), and the one whose stride**2 phases --phases counts.
    window: depth, in slices, of the z-windows inference runs the network on.
    train_stride: the in-plane stride training cut its patches with; None when the checkpoint does not say.
    train_patch_zyx: the training patch in voxels (slices, rows, columns); None when the checkpoint does not say.
    """

    inplane_voxel_mm: tuple[float, float] = SEEN_INPLANE_MM
    stride: int = 4
    window: int = 128
    train_stride: int | None = None
    train_patch_zyx: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.inplane_voxel_mm)
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ValueError(f"sampling: inplane_voxel_mm must be 0 < lo <= hi (mm), got {self.inplane_voxel_mm}")
        object.__setattr__(self, "inplane_voxel_mm", (lo, hi))
        for name in ("stride", "window", "train_stride"):
            value = getattr(self, name)
            if not (value is None and name == "train_stride") and not is_whole(value):
                raise ValueError(f"sampling: {name} must be an integer >= 1, got {value!r}")
        patch = self.train_patch_zyx
        if patch is not None:
            if len(patch) != 3 or not all(is_whole(v) for v in patch):
                raise ValueError(f"sampling: train_patch_zyx must be 3 integers >= 1, got {patch!r}")
            object.__setattr__(self, "train_patch_zyx", tuple(int(v) for v in patch))

    def to_dict(self) -> dict:
        """Python primitives only (torch.load(weights_only=True) reads them back)."""
        patch = self.train_patch_zyx
        return {
            "inplane_voxel_mm": [float(v) for v in self.inplane_voxel_mm],
            "stride": int(self.stride),
            "window": int(self.window),
            "train_stride": None if self.train_stride is None else int(self.train_stride),
            "train_patch_zyx": None if patch is None else [int(v) for v in patch],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Sampling:
        """The inverse of :meth:`to_dict`; KeyError, TypeError or ValueError for a malformed entry."""
        if not isinstance(d, dict):
            raise TypeError(f"entry 'sampling' is of type {type(d).__name__}, not dict")
        patch = d["train_patch_zyx"]
        return cls(
            inplane_voxel_mm=tuple(d["inplane_voxel_mm"]),
            stride=d["stride"],
            window=d["window"],
            train_stride=d["train_stride"],
            train_patch_zyx=None if patch is None else tuple(patch),
        )

    @classmethod
    def of_training_record(cls, training: dict) -> Sampling:
        """The Sampling of a checkpoint written before checkpoints stored one, from its training record: the voxel
        range it recorded as "inplane_voxel_mm" (SEEN_INPLANE_MM when none), its train_config's stride and patch
        (None when absent), the paper's stride 4 and 128-slice windows."""
        train_config = training.get("train_config") or {}
        patch = train_config.get("patch")
        return cls(
            inplane_voxel_mm=tuple(training.get("inplane_voxel_mm", SEEN_INPLANE_MM)),
            train_stride=train_config.get("stride"),
            train_patch_zyx=None if patch is None else tuple(patch),
        )

    @classmethod
    def of_payload(cls, payload: dict) -> Sampling:
        """The Sampling of a loaded checkpoint payload: its "sampling" entry, or for a checkpoint written before
        there was one (the shipped weights/runet.pt), the one its training record implies."""
        if "sampling" in payload:
            return cls.from_dict(payload["sampling"])
        return cls.of_training_record(payload.get("training", {}))


# --- PlanOptions: what the user chooses (validated here, once) ---------------------------------------------------


@dataclass(frozen=True)
class PlanOptions:
    """What the user chooses about cutting a volume (predict's --phases, --overlap, --stride, --short-volume).

    phases: how many in-plane phases run of a split at the checkpoint's Sampling.stride (16, 4 or 1 at stride 4);
        a volume split at a smaller stride runs at most all of that stride's stride**2. None (the default): every
        phase of the volume's stride (16 at the paper's stride 4), so nothing is interpolated.
    overlap: fraction of a z-window shared with the next, in [0, 1).
    stride: "auto" (chosen per volume from its in-plane spacing, :func:`choose_stride`) or a fixed stride >= 1.
    short_volume: one of :data:`SHORT_VOLUMES` (see :class:`PatchPlan`).
    window: z-window depth in slices; None: the checkpoint's Sampling.window.

    OptionError (a ValueError naming the field) for a value out of range.
    """

    phases: int | None = None
    overlap: float = 0.5
    stride: int | str = "auto"
    short_volume: str = "fit"
    window: int | None = None

    def __post_init__(self) -> None:
        if not (self.stride == "auto" or is_whole(self.stride)):
            raise OptionError("stride", f"must be 'auto' or an integer >= 1, got {self.stride!r}")
        if self.phases is not None:
            check_whole("phases", self.phases)
        if self.window is not None:
            check_whole("window", self.window, " (slices)")
        check_overlap(self.overlap)
        check_choice("short_volume", self.short_volume, SHORT_VOLUMES)

    @classmethod
    def from_args(cls, args: object) -> PlanOptions:
        """The options of a parsed command line (``phases``, ``overlap``, ``stride`` as one of
        :data:`STRIDE_CHOICES`, ``short_volume``, ``window``; each optional, the default where absent)."""
        stride = getattr(args, "stride", "auto")
        return cls(
            phases=getattr(args, "phases", cls.phases),
            overlap=getattr(args, "overlap", cls.overlap),
            stride=stride if stride == "auto" else int(stride),
            short_volume=getattr(args, "short_volume", cls.short_volume),
            window=getattr(args, "window", None),
        )


# --- PatchPlan: how one volume is cut ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchPlan:
    """How a volume is cut.

    stride: in-plane stride of the polyphase split (4 in the paper); phases: how many of the stride**2 phases run
    (stride**2, (stride/2)**2 or 1); window: z-window depth in slices; overlap: fraction of a window shared with the
    next one, in [0, 1); size_multiple: the network's required size multiple (2 ** poolings); short_volume: for
    D < window, "pad" replicates edge slices up to one full window (as in training), "fit" runs one window of depth
    D rounded up to size_multiple.
    """

    stride: int = 4
    phases: int = 16
    window: int = 128
    overlap: float = 0.5
    size_multiple: int = 16
    short_volume: str = "fit"

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        grid = self.grid_step  # validates phases
        if self.stride % grid:
            raise ValueError(f"phases={self.phases} does not divide stride {self.stride} evenly")
        check_overlap(self.overlap)
        if self.window < 1 or self.window % self.size_multiple:
            raise ValueError(f"window {self.window} must be a positive multiple of {self.size_multiple}")
        check_choice("short_volume", self.short_volume, SHORT_VOLUMES)

    @property
    def grid_step(self) -> int:
        """In-plane spacing, in voxels, of the grid that the computed phases cover (1 when all phases run)."""
        per_axis = math.isqrt(self.phases)
        if per_axis * per_axis != self.phases or per_axis < 1 or self.stride % per_axis:
            raise ValueError(f"phases must be a square dividing {self.stride**2} (e.g. 16, 4, 1), got {self.phases}")
        return self.stride // per_axis

    def offsets(self) -> list[tuple[int, int]]:
        """The (y, x) phase offsets that run: multiples of grid_step below stride."""
        g = self.grid_step
        return [(i, j) for i in range(0, self.stride, g) for j in range(0, self.stride, g)]


# --- the planner ----------------------------------------------------------------------------------------------------


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


def plan_patches(
    options: PlanOptions, sampling: Sampling, spacing_yx_mm: Sequence[float], size_multiple: int
) -> PatchPlan:
    """The PatchPlan of a volume of in-plane spacing ``spacing_yx_mm`` (mm, y then x) for a network whose sizes
    must be multiples of ``size_multiple``: the stride of ``options`` ("auto": the divisor of the paper's stride
    whose strided voxel lies in ``sampling.inplane_voxel_mm``), ``options.phases`` capped at stride**2 (all
    stride**2 phases when None), the options' window (the sampling's when None), overlap and short-volume policy.
    ValueError for a combination that PatchPlan refuses (a window that is not a multiple of ``size_multiple``,
    phases that do not divide the stride)."""
    stride = options.stride
    if stride == "auto":
        stride = choose_stride(tuple(spacing_yx_mm), sampling.inplane_voxel_mm, divisors(sampling.stride))
    return PatchPlan(
        stride=stride,
        phases=stride * stride if options.phases is None else min(options.phases, stride * stride),
        window=options.window or sampling.window,
        overlap=options.overlap,
        size_multiple=size_multiple,
        short_volume=options.short_volume,
    )


def check_plan_options(options: PlanOptions, sampling: Sampling, size_multiple: int) -> None:
    """ValueError when ``options`` cannot plan a volume for this network at all (a window that is not a multiple
    of ``size_multiple``, phases that do not divide the stride), found before any volume is read: the plan of a
    1 mm volume at the checkpoint's own stride (or the fixed one)."""
    probe = replace(options, stride=sampling.stride) if options.stride == "auto" else options
    plan_patches(probe, sampling, (1.0, 1.0), size_multiple)
