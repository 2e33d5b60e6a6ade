"""Strided patch inference: the 4x4 in-plane polyphase sub-volumes of the training scheme, in z-windows.

A volume of shape (D, H, W) (zyx) is split into the stride x stride in-plane phases vol[:, i::s, j::s]. Each phase is
a sub-volume that the network sees exactly as in training; it is cut into z-windows of ``window`` slices that overlap
by ``overlap`` (a fraction), whose probabilities are summed where they overlap. Every voxel belongs to exactly one
phase, so with all phases computed the argmax of each phase is scattered straight into the full-resolution label map:
no full-resolution probability volume is ever held. With fewer phases (4 or 1) the computed phases form a coarser
regular grid whose probabilities are linearly interpolated in-plane, a few slices at a time, before the argmax.

This module runs a plan; inference/plan.py makes it (:class:`inference.plan.PatchPlan`). Windows, sums and the
interpolation are torch tensors on a torch device, or numpy arrays (``device=None``: the OpenVINO backend, which
then never imports torch); each step is written once for both, with the same float32 arithmetic in the same
order, so both give the same labels, byte for byte.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, Union

import numpy as np

from inference.openvino_backend import cpu_threads
from inference.plan import PatchPlan

if TYPE_CHECKING:
    import torch

Array = Union["torch.Tensor", np.ndarray]
"""A torch tensor (on a torch device) or a numpy array (device None)."""
PredictFn = Callable[[Array], Array]
"""(B, 1, d, h, w) float32 windows -> (B, C, d, h, w) class probabilities (any float dtype): tensors on the device,
or numpy arrays when the device is None."""
ProgressFn = Callable[[int, int], None]
"""Called after every network call with (windows done, windows in the volume), for a progress display."""
Normalize = Callable[[np.ndarray], np.ndarray]
"""Raw voxel values (HU, any shape) -> float32 network input of the same shape, elementwise (for example
inference.preprocess.Normalization.apply)."""


def z_window_starts(depth: int, window: int, overlap: float) -> list[int]:
    """Starts of z-windows covering [0, depth) (depth >= window): evenly spread, first 0, last depth - window."""
    if depth < window:
        raise ValueError(f"depth {depth} < window {window}")
    step = max(1.0, window * (1.0 - overlap))
    n = math.ceil((depth - window) / step) + 1
    return sorted({int(round(v)) for v in np.linspace(0, depth - window, n)})


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def z_windows(depth: int, plan: PatchPlan) -> tuple[int, list[int]]:
    """(padded depth, window starts) for a volume of ``depth`` slices."""
    if depth >= plan.window:
        return depth, z_window_starts(depth, plan.window, plan.overlap)
    padded = plan.window if plan.short_volume == "pad" else round_up(depth, plan.size_multiple)
    return padded, [0]


def phase_input(
    volume: np.ndarray,
    offset: tuple[int, int],
    plan: PatchPlan,
    depth: int,
    hw: tuple[int, int],
    pad_value: float,
    normalize: Normalize | None = None,
) -> np.ndarray:
    """(depth, hw[0], hw[1]) float32 sub-volume of a phase: replicate-padded along z, constant-padded in-plane.

    ``normalize``: when given, ``volume`` holds raw values (HU) and only the phase's voxels are normalized by it
    (elementwise, so the values are those of the phase of the normalized volume)."""
    sub = volume[:, offset[0] :: plan.stride, offset[1] :: plan.stride]
    if normalize is not None:
        sub = normalize(sub)
    out = np.full((depth, *hw), pad_value, dtype=np.float32)
    out[: sub.shape[0], : sub.shape[1], : sub.shape[2]] = sub
    if depth > sub.shape[0]:
        out[sub.shape[0] :] = out[sub.shape[0] - 1]
    return out


def _batches(items: list, size: int) -> Iterator[list]:
    for k in range(0, len(items), size):
        yield items[k : k + size]


def _check_inputs(volume: np.ndarray, batch_size: int) -> None:
    if volume.ndim != 3 or min(volume.shape) < 1:
        raise ValueError(f"volume must be a non-empty (D, H, W) array, got shape {volume.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def window_coverage(depth: int, plan: PatchPlan) -> np.ndarray:
    """(depth,) int array: how many z-windows of ``plan`` cover each slice of a volume of ``depth`` slices.

    Dividing the sums of :func:`iter_phase_sums` by it (along z) gives the mean window probabilities.
    """
    padded, starts = z_windows(depth, plan)
    count = np.zeros(padded, dtype=np.int64)
    for z0 in starts:
        count[z0 : z0 + min(plan.window, padded)] += 1
    return count[:depth]


def _zeros(shape: tuple[int, ...], device: torch.device | None) -> Array:
    """float32 zeros: a tensor on ``device``, or a numpy array for None."""
    if device is None:
        return np.zeros(shape, dtype=np.float32)
    torch = _torch_module()
    return torch.zeros(shape, dtype=torch.float32, device=device)


def _zeros_in_layout_of(like: Array, shape: tuple[int, ...], device: torch.device | None) -> Array:
    """float32 zeros of ``shape`` (C, D, H, W), class axis innermost when ``like`` has it so (channels-last torch
    network output; numpy outputs are C-contiguous), so that adding window probabilities reads and writes memory in
    order."""
    if device is not None and like.dim() == 4 and like.stride(0) == 1 and like.shape[0] > 1:
        return _zeros((*shape[1:], shape[0]), device).permute(3, 0, 1, 2)
    return _zeros(shape, device)


def _torch_device(device: torch.device | str | None) -> torch.device | None:
    """The torch device of a name or device; None (numpy arrays) stays None."""
    return None if device is None else _torch_module().device(device)


def _no_grad(device: torch.device | None) -> contextlib.AbstractContextManager:
    """torch's inference mode on a torch device; nothing for numpy."""
    return contextlib.nullcontext() if device is None else _torch_module().inference_mode()


def iter_phase_sums(
    volume: np.ndarray,
    predict_fn: PredictFn,
    num_classes: int,
    plan: PatchPlan = PatchPlan(),
    batch_size: int = 2,
    device: torch.device | str | None = "cpu",
    pad_value: float = -1.0,
    progress: ProgressFn | None = None,
    normalize: Normalize | None = None,
) -> Iterator[tuple[tuple[int, int], Array]]:
    """Run the network over every z-window of every computed phase; yield each phase once all its windows ran.

    Windows of consecutive phases are batched together, so a phase is yielded as soon as its last window came
    back and its buffers are freed: at most ``ceil(batch_size / windows per phase) + 1`` phase buffers live at once.

    Args: as :func:`predict_labels`; ``progress`` is called after every network call (see :data:`ProgressFn`),
    ``normalize`` normalizes each phase's raw values (None: ``volume`` is normalized already).
    Yields:
        (offset, sums): the phase's (y, x) offset, and (C, D, hi, wj) float32 sums of the window probabilities on
        ``device`` (numpy arrays for None; hi, wj: the phase's in-plane size, vol[:, i::stride, j::stride].shape[1:]);
        divide by :func:`window_coverage` along z for the mean probabilities.
    """
    _check_inputs(volume, batch_size)
    device = _torch_device(device)
    d, h, w = volume.shape
    s = plan.stride
    depth, starts = z_windows(d, plan)
    hw = (round_up(-(-h // s), plan.size_multiple), round_up(-(-w // s), plan.size_multiple))
    win = min(plan.window, depth)
    offsets = plan.offsets()

    items = [(p, z0) for p in range(len(offsets)) for z0 in starts]
    remaining = {p: len(starts) for p in range(len(offsets))}
    sums: dict[int, Array] = {}
    inputs: dict[int, Array] = {}
    done = 0
    for batch in _batches(items, batch_size):
        for p, _ in batch:
            if p not in inputs:
                phase = phase_input(volume, offsets[p], plan, depth, hw, pad_value, normalize)
                inputs[p] = phase if device is None else _torch_module().from_numpy(phase).to(device)
        x = _cat([inputs[p][None, z0 : z0 + win] for p, z0 in batch], 0)[:, None]
        with _no_grad(device):
            probs = predict_fn(x)
        if probs.shape != (len(batch), num_classes, win, *hw):
            raise ValueError(
                f"predict_fn returned shape {tuple(probs.shape)}, expected {(len(batch), num_classes, win, *hw)}"
            )
        done += len(batch)
        if progress is not None:
            progress(done, len(items))
        for k, (p, z0) in enumerate(batch):
            if p not in sums:
                sums[p] = _zeros_in_layout_of(probs[k], (num_classes, depth, *hw), device)
            sums[p][:, z0 : z0 + win] += probs[k]
            remaining[p] -= 1
            if remaining[p] == 0:
                i, j = offsets[p]
                hi, wj = len(range(i, h, s)), len(range(j, w, s))
                del inputs[p]
                yield offsets[p], sums.pop(p)[:, :d, :hi, :wj]


def predict_labels(
    volume: np.ndarray,
    predict_fn: PredictFn,
    num_classes: int,
    plan: PatchPlan = PatchPlan(),
    batch_size: int = 2,
    device: torch.device | str | None = "cpu",
    pad_value: float = -1.0,
    progress: ProgressFn | None = None,
    normalize: Normalize | None = None,
) -> np.ndarray:
    """Segment a volume by strided patch inference.

    Args:
        volume: (D, H, W) zyx, canonical orientation: float32 normalized intensities, or with ``normalize`` the
            raw values (HU, any real dtype) that it normalizes one phase at a time as the phase is cut, so that
            no normalized float32 copy of the whole volume is held (at stride s, 1/s**2 of it per phase).
        predict_fn: the network, see :data:`PredictFn`.
        num_classes: C, the number of classes predict_fn returns.
        plan: how to cut the volume.
        batch_size: windows per call of predict_fn (windows of several phases are batched together).
        device: where windows and the per-phase probability sums live: a torch device, or None for numpy arrays
            (predict_fn then takes and returns numpy arrays, and torch is not used).
        pad_value: normalized intensity used for in-plane padding (air).
        progress: called after every network call with (windows done, windows in all), or None.
        normalize: see ``volume``; None when ``volume`` is normalized already.
    Returns:
        (D, H, W) uint8 argmax labels.
    """
    _check_inputs(volume, batch_size)
    device = _torch_device(device)
    d, h, w = volume.shape
    g = plan.grid_step
    labels = np.empty((d, h, w), dtype=np.uint8)
    grid = None
    if g > 1:  # probabilities on the coarser grid of the computed phases, interpolated at the end
        grid = _zeros((num_classes, d, -(-h // g), -(-w // g)), device)
    phases = iter_phase_sums(volume, predict_fn, num_classes, plan, batch_size, device, pad_value, progress, normalize)
    for offset, acc in phases:
        _finish_phase(acc, offset, plan, labels, grid)
    if grid is not None:
        _upsample_argmax(grid, g, labels)
    return labels


def _torch_module():
    """torch, imported when a step first runs on tensors (the numpy path never imports it)."""
    import torch

    return torch


def _cat(parts: list[Array], dim: int) -> Array:
    """``parts`` joined along ``dim`` (torch.cat or np.concatenate, by their kind)."""
    return np.concatenate(parts, dim) if isinstance(parts[0], np.ndarray) else _torch_module().cat(parts, dim)


def _repeat(x: Array, step: int, dim: int) -> Array:
    """Every element repeated ``step`` times along ``dim``."""
    return np.repeat(x, step, dim) if isinstance(x, np.ndarray) else x.repeat_interleave(step, dim)


def _numpy(x: Array) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()


def _argmax_u8(probs: Array) -> Array:
    """(C, ...) scores -> (...) uint8 index of the largest (the first on ties, as argmax), of the same kind.

    On torch ``max(0).indices`` rather than ``argmax(0)``: the same indices, several times faster on the CPU for a
    leading class axis.
    """
    if isinstance(probs, np.ndarray):
        return _numpy_argmax_u8(probs)
    return probs.max(0).indices.to(_torch_module().uint8)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """Threads for numpy's steps: as many as inference uses (inference.openvino_backend.cpu_threads)."""
    return ThreadPoolExecutor(cpu_threads())


def _numpy_argmax_u8(probs: np.ndarray, parallel_above: int = 1 << 20) -> np.ndarray:
    """``probs.argmax(0)`` as uint8, over slabs of the second axis on every CPU for large arrays (numpy's argmax
    runs on one thread, and lets go of the interpreter while it runs); the same indices either way."""
    out = np.empty(probs.shape[1:], dtype=np.uint8)
    n = probs.shape[1] if probs.ndim > 1 else 0
    workers = cpu_threads()
    if probs.size <= parallel_above or workers < 2 or n < 2:
        out[...] = probs.argmax(0)
        return out
    bounds = np.linspace(0, n, min(workers, n) + 1).astype(int)

    def slab(k: int) -> None:
        out[bounds[k] : bounds[k + 1]] = probs[:, bounds[k] : bounds[k + 1]].argmax(0)

    list(_pool().map(slab, range(len(bounds) - 1)))
    return out


def _argmax_classes(probs: Array) -> np.ndarray:
    """(C, ...) scores -> (...) uint8 numpy index of the largest (the first on ties, as argmax)."""
    return _numpy(_argmax_u8(probs))


def _finish_phase(
    acc: Array,
    offset: tuple[int, int],
    plan: PatchPlan,
    labels: np.ndarray,
    grid: Array | None,
) -> None:
    """Scatter one phase's summed probabilities (C, D, hi, wj): labels directly, or into the coarse grid."""
    s, i, j = plan.stride, offset[0], offset[1]
    if grid is None:
        labels[:, i::s, j::s] = _argmax_classes(acc)
    else:
        g = plan.grid_step
        grid[:, :, i // g :: s // g, j // g :: s // g] = acc


def _along(dim: int, part: slice) -> tuple[slice, ...]:
    """The index of ``part`` along axis ``dim`` (every element of the axes before it)."""
    return (slice(None),) * dim + (part,)


def _upsample_axis(p: Array, step: int, n_out: int, dim: int) -> Array:
    """Linear interpolation along ``dim`` of samples taken at positions step*k onto positions 0..n_out-1.

    Output position i = step*k + r is (1 - r/step) * p[k] + (r/step) * p[k+1], with p[k+1] clamped to the last
    sample (so positions past the last sample repeat it). Written as ``step`` strided writes of whole slices
    instead of a gather per output position; float32 products with the scalars rounded to float32, then their sum,
    on torch and numpy alike.
    """
    n_in = p.shape[dim]
    nxt = _cat([p[_along(dim, slice(1, None))], p[_along(dim, slice(n_in - 1, None))]], dim) if n_in > 1 else p
    shape = list(p.shape)
    shape[dim] = n_out
    numpy = isinstance(p, np.ndarray)
    out = np.empty(shape, dtype=p.dtype) if numpy else p.new_empty(shape)
    add = np.add if numpy else _torch_module().add
    for r in range(min(step, n_out)):
        m = len(range(r, n_out, step))
        dst = out[_along(dim, slice(r, None, step))]
        a, b = p[_along(dim, slice(0, m))], nxt[_along(dim, slice(0, m))]
        f = r / step
        if r:
            add(a * (1 - f), b * f, out=dst)
        else:
            dst[...] = a
    return out


def _upsample_argmax_dense(grid: Array, step: int, labels: np.ndarray, z0: int, z1: int) -> None:
    """labels[z0:z1] = argmax of the bilinear in-plane interpolation of grid[:, z0:z1] (C, s, Hg, Wg), every voxel."""
    _, h, w = labels.shape
    p = _upsample_axis(grid[:, z0:z1], step, h, 2)
    p = _upsample_axis(p, step, w, 3)
    labels[z0:z1] = _argmax_classes(p)


def _upsample_argmax(grid: Array, step: int, labels: np.ndarray, slab: int = 32, dense_above: float = 0.25) -> None:
    """Bilinear in-plane interpolation of grid (C, D, Hg, Wg) to labels' (D, H, W), then argmax, slab by slab.

    The interpolated probabilities of a voxel are a convex combination of those of the (up to 4) grid samples
    around it, so where those samples share their argmax the voxel has it too (the same holds after float
    rounding, which is monotone). Only the cells whose corner samples disagree (near organ boundaries) are
    interpolated, with the dense pass's arithmetic; the labels are identical to interpolating every voxel
    (:func:`_upsample_argmax_dense`), which a slab falls back to when more than ``dense_above`` of its cells are
    unsure. Slabs of 32 slices keep the number of tensor operations (each a round trip through the thread pool)
    low; the boundary-only work per slab is small.
    """
    d, h, w = labels.shape
    c, _, hg, wg = grid.shape
    if isinstance(grid, np.ndarray):
        f = np.arange(step, dtype=np.float32) / step  # sub-sample offsets
    else:
        f = _torch_module().arange(step, device=grid.device, dtype=_torch_module().float32) / step
    fy, fx = f.reshape(1, 1, step), f.reshape(1, 1, 1, step)
    for z0 in range(0, d, slab):
        z1 = min(z0 + slab, d)
        s = z1 - z0
        g = grid[:, z0:z1].reshape(c, -1)  # (C, s * Hg * Wg)
        coarse = _argmax_u8(g).reshape(s, hg, wg)
        below = _cat([coarse[:, 1:], coarse[:, -1:]], 1)  # the sample at ky + 1 (clamped), and so on
        # a cell (the step x step voxels from one sample to the next) is unsure when its corners disagree
        unsure = (coarse != below) | (coarse != _cat([coarse[:, :, 1:], coarse[:, :, -1:]], 2))
        unsure |= coarse != _cat([below[:, :, 1:], below[:, :, -1:]], 2)
        cells = unsure.reshape(-1).nonzero()[0] if isinstance(unsure, np.ndarray) else unsure.view(-1).nonzero()[:, 0]
        if len(cells) > dense_above * s * hg * wg:
            for k in range(z0, z1, 8):  # 8 slices at a time: (C, 8, H, W) float32 temporaries
                _upsample_argmax_dense(grid, step, labels, k, min(k + 8, z1))
            continue
        out = _repeat(_repeat(coarse, step, 1), step, 2)  # (s, Hg * step, Wg * step)
        if len(cells):
            zc, yx = cells // (hg * wg), cells % (hg * wg)
            ky, kx = yx // wg, yx % wg
            down, right = (ky < hg - 1) * wg, (kx < wg - 1) * 1
            a, b = g[:, cells, None], g[:, cells + down, None]
            cc, dd = g[:, cells + right, None], g[:, cells + down + right, None]
            left = a * (1 - fy) + b * fy  # (C, n, step): along y first, as the dense pass
            rgt = cc * (1 - fy) + dd * fy
            p = left[..., None] * (1 - fx) + rgt[..., None] * fx  # (C, n, step, step)
            out.reshape(s, hg, step, wg, step)[zc, ky, :, kx, :] = _argmax_u8(p)
        labels[z0:z1] = _numpy(out[:, :h, :w])
