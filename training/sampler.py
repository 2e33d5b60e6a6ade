"""The paper's patch sampler: I[k:k+depth, i::stride, j::stride] with k, i, j drawn at random.

From a canonical volume (D, H, W) (zyx), a patch takes ``depth`` consecutive slices starting at k in 0..D-depth and
the in-plane phase (i, j) in 0..stride-1 of the stride; the label map is cut the same way. Volumes of fewer than
``depth`` slices are padded at the end by replicating the last slice (image and label), as inference pads them.
After the stride the in-plane size (ceil(H/stride), ceil(W/stride)) is cropped at a random offset, or padded at the
end with air (image) and background (label), to the patch's (height, width), as inference pads a phase.

Every random draw of a patch comes from np.random.default_rng([seed, epoch, position]), and the case order of an
epoch from default_rng([seed, epoch]): what a step sees depends only on (seed, epoch, step), not on workers,
processes or interruptions. That is what makes resume and the multi-process run reproduce a single run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.preprocess import Normalization
from training.data import CachedCase


@dataclass(frozen=True)
class PatchSpec:
    """depth: slices per patch; height, width: in-plane size after the stride; stride: in-plane stride (4 in the
    paper, so a 512 x 512 slice gives 128 x 128)."""

    depth: int = 128
    height: int = 128
    width: int = 128
    stride: int = 4

    def __post_init__(self) -> None:
        if min(self.depth, self.height, self.width, self.stride) < 1:
            raise ValueError(f"patch sizes and stride must be positive, got {self}")


@dataclass(frozen=True)
class Draw:
    """The random choices of one patch: z start k, in-plane phase (i, j), crop offsets (y0, x0) after the stride."""

    k: int
    i: int
    j: int
    y0: int
    x0: int


def draw_patch(shape_zyx: tuple[int, int, int], spec: PatchSpec, rng: np.random.Generator) -> Draw:
    """Draw k in 0..max(D-depth, 0), i, j in 0..stride-1, then crop offsets for the strided in-plane size."""
    d, h, w = shape_zyx
    k = int(rng.integers(0, max(d - spec.depth, 0) + 1))
    i = int(rng.integers(0, spec.stride))
    j = int(rng.integers(0, spec.stride))
    hs, ws = len(range(i, h, spec.stride)), len(range(j, w, spec.stride))
    y0 = int(rng.integers(0, max(hs - spec.height, 0) + 1))
    x0 = int(rng.integers(0, max(ws - spec.width, 0) + 1))
    return Draw(k, i, j, y0, x0)


def cut_patch(volume: np.ndarray, draw: Draw, spec: PatchSpec, pad_value: float | int) -> np.ndarray:
    """(D, H, W) array -> (depth, height, width) patch of the same dtype, as the module docstring describes."""
    if volume.ndim != 3:
        raise ValueError(f"volume must be (D, H, W), got shape {volume.shape}")
    s = spec.stride
    sub = volume[draw.k : draw.k + spec.depth, draw.i :: s, draw.j :: s]
    sub = sub[:, draw.y0 : draw.y0 + spec.height, draw.x0 : draw.x0 + spec.width]
    out = np.full((spec.depth, spec.height, spec.width), pad_value, dtype=volume.dtype)
    out[: sub.shape[0], : sub.shape[1], : sub.shape[2]] = sub
    if sub.shape[0] < spec.depth:  # replicate the last slice along z (image and label alike)
        out[sub.shape[0] :] = out[sub.shape[0] - 1]
    return out


def epoch_order(num_cases: int, samples: int, global_batch: int, seed: int, epoch: int) -> np.ndarray:
    """Case indices of an epoch's patches: whole seeded permutations until ``samples`` patches, then wrapped round
    to a multiple of global_batch (so every process runs the same number of steps). Shape (steps * global_batch,)."""
    if num_cases < 1 or samples < 1 or global_batch < 1:
        raise ValueError("num_cases, samples and global_batch must be positive")
    rng = np.random.default_rng([seed, epoch])
    order = np.concatenate([rng.permutation(num_cases) for _ in range(-(-samples // num_cases))])[:samples]
    steps = -(-samples // global_batch)
    return np.resize(order, steps * global_batch)


class PatchDataset(torch.utils.data.Dataset):
    """One process's patches of one epoch, for a torch DataLoader (workers cut patches in parallel).

    Item n -> (image (1, depth, height, width) float32 normalized, label (depth, height, width) int64).
    positions: this process's global positions within the epoch; the patch at position p is drawn from
    default_rng([seed, epoch, p]) from case order[p].
    """

    def __init__(
        self,
        cases: list[CachedCase],
        spec: PatchSpec,
        normalization: Normalization,
        order: np.ndarray,
        positions: list[int],
        seed: int,
        epoch: int,
    ) -> None:
        self.cases, self.spec, self.norm = cases, spec, normalization
        self.order, self.positions, self.seed, self.epoch = order, positions, seed, epoch
        self.air = normalization.air_value

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.positions[n]
        case = self.cases[int(self.order[p])]
        rng = np.random.default_rng([self.seed, self.epoch, p])
        draw = draw_patch(case.image.shape, self.spec, rng)
        image = self.norm.apply(cut_patch(case.image, draw, self.spec, -1024))
        label = cut_patch(case.label, draw, self.spec, 0)
        return torch.from_numpy(image)[None], torch.from_numpy(label.astype(np.int64))


def rank_positions(total: int, batch: int, rank: int, world: int) -> list[int]:
    """Positions of process ``rank``: in global step t it takes [t*G + rank*batch, t*G + (rank+1)*batch), G =
    batch * world, so the union over processes of a step is exactly what one process of batch G would take."""
    g = batch * world
    return [t * g + rank * batch + b for t in range(total // g) for b in range(batch)]


def worker_init(_: int) -> None:
    """DataLoader workers cut patches with one thread each (the main process owns the cores)."""
    torch.set_num_threads(1)
