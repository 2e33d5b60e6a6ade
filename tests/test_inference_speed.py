"""The inference speed-ups keep behaviour: folded batch norms, the in-place regularized softmax, channels-last,
per-phase sums, bf16 selection, and the prefetched reads of the CLI."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inference import runner
from inference.checkpoint import Checkpoint
from inference.engine import Segmenter
from inference.model import RUNet, UNetConfig, fuse_batchnorm
from inference.patching import iter_phase_sums, predict_labels, window_coverage
from inference.plan import PatchPlan, PlanOptions
from inference.preprocess import Normalization
from inference.regularized_softmax import regularized_softmax


def _tiny_model(norm: str = "batch", seed: int = 0) -> RUNet:
    torch.manual_seed(seed)
    model = RUNet(UNetConfig(widths=(4, 8, 16), norm=norm)).eval()
    for m in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, nn.BatchNorm3d | nn.InstanceNorm3d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            if m.running_mean is not None:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_fused_network_computes_the_same_function(norm):
    model = _tiny_model(norm)
    fused = fuse_batchnorm(model)
    x = torch.randn(2, 1, 16, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, nn.InstanceNorm3d) for m in fused.modules()) == (norm == "instance")
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules()) == (norm == "batch")  # original untouched


@pytest.mark.parametrize("shape", [(1, 5, 6, 7, 8), (2, 3, 1, 4, 5), (1, 2, 3, 1, 1)])
def test_inplace_regularized_softmax_matches_the_autograd_version(shape):
    torch.manual_seed(1)
    logits = torch.randn(shape) * 3
    before = logits.clone()
    lam = torch.tensor(0.8)
    with torch.enable_grad():
        ref = regularized_softmax(logits.clone().requires_grad_(True), lam, 1.5).detach()
    with torch.inference_mode():
        fast = regularized_softmax(logits, lam, 1.5)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    assert torch.equal(logits, before)  # the input is not modified


def test_phase_sums_divided_by_coverage_are_mean_window_probabilities():
    plan = PatchPlan(stride=2, phases=4, window=16, overlap=0.5, size_multiple=8)
    vol = np.random.default_rng(0).standard_normal((40, 12, 14)).astype(np.float32)
    ones = lambda x: torch.ones((x.shape[0], 3, *x.shape[2:]))  # noqa: E731
    seen = []
    for offset, acc in iter_phase_sums(vol, ones, 3, plan, batch_size=3):
        seen.append(offset)
        i, j = offset
        assert acc.shape == (3, 40, len(range(i, 12, 2)), len(range(j, 14, 2)))
        cover = torch.from_numpy(window_coverage(40, plan)).float()
        torch.testing.assert_close(acc / cover[None, :, None, None], torch.ones_like(acc))
    assert seen == plan.offsets()
    assert window_coverage(40, plan).min() >= 1


def test_segmenter_speedups_give_the_same_labels():
    model = _tiny_model()
    ckpt = Checkpoint(model=model, config=model.config, normalization=Normalization(), label_names={})
    vol = np.random.default_rng(2).integers(-300, 400, size=(20, 24, 28)).astype(np.int16)
    options = PlanOptions(stride=4, window=16)
    plain = Segmenter(ckpt, torch.device("cpu"), options, postprocess="none", fuse=False, channels_last=False)
    fast = Segmenter(ckpt, torch.device("cpu"), options, postprocess="none", fuse=True, channels_last=True)
    plain, fast = plain.segment(vol, (1.0, 1.0, 1.0)), fast.segment(vol, (1.0, 1.0, 1.0))
    assert (plain != fast).mean() < 1e-3
    assert any(isinstance(m, nn.BatchNorm3d) for m in ckpt.model.modules())


def test_prefetch_reads_in_order_and_one_ahead(monkeypatch):
    started: list[str] = []

    def fake_read(path: Path) -> str:  # read_input of a path
        started.append(path.name)
        if path.name == "bad":
            raise runner.InputError("bad input")
        return path.name

    monkeypatch.setattr(runner, "read_input", fake_read)
    paths = [Path(n) for n in ("a", "bad", "c")]
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = []
        for k, fut in enumerate(runner.prefetch_reads(paths, pool)):
            try:
                results.append(fut.result())
            except runner.InputError:
                results.append("error")
            assert len(started) >= min(k + 1, len(paths))
    assert results == ["a", "error", "c"]
    assert started == ["a", "bad", "c"]


def test_predict_labels_unchanged_by_batch_size():
    model = _tiny_model()
    vol = np.random.default_rng(3).standard_normal((20, 24, 28)).astype(np.float32)
    plan = PatchPlan(window=16, size_multiple=4)
    with torch.inference_mode():
        a = predict_labels(vol, model, 5, plan, batch_size=1)
        b = predict_labels(vol, model, 5, plan, batch_size=5)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("step", [2, 4])
@pytest.mark.parametrize("kind", ["organs", "noise", "ties"])
@pytest.mark.parametrize("shape", [(9, 64, 60), (3, 1, 7), (2, 5, 1), (4, 30, 33)])
def test_boundary_only_upsampling_equals_interpolating_every_voxel(step, kind, shape):
    from inference.patching import _upsample_argmax, _upsample_argmax_dense

    d, h, w = shape
    hg, wg = -(-h // step), -(-w // step)
    gen = torch.Generator().manual_seed(step * 100 + h)
    if kind == "organs":
        y, x = torch.arange(hg).float()[:, None], torch.arange(wg).float()[None, :]
        logits = torch.zeros(5, d, hg, wg)
        for k, (cy, cx, r) in enumerate([(0.5, 0.3, 0.3), (0.6, 0.7, 0.15), (0.3, 0.8, 0.2), (0.7, 0.4, 0.1)], 1):
            blob = 1 - ((y - cy * hg) ** 2 + (x - cx * wg) ** 2) / max(r * hg, 1.0) ** 2
            logits[k] = 3 * blob.clamp(min=0)[None] + 0.05 * torch.rand(d, hg, wg, generator=gen)
        grid = torch.softmax(logits, 0)
    elif kind == "noise":
        grid = torch.rand(5, d, hg, wg, generator=gen)
    else:
        grid = (torch.rand(5, d, hg, wg, generator=gen) * 2).round() / 2
    dense = np.empty(shape, np.uint8)
    for z0 in range(0, d, 4):
        _upsample_argmax_dense(grid, step, dense, z0, min(z0 + 4, d))
    for dense_above in (0.25, 1.0):  # with the dense fallback, and forced boundary-only
        sparse = np.empty(shape, np.uint8)
        _upsample_argmax(grid, step, sparse, slab=4, dense_above=dense_above)
        np.testing.assert_array_equal(sparse, dense)
        _upsample_argmax(grid.numpy(), step, sparse, slab=4, dense_above=dense_above)  # numpy arrays: the same
        np.testing.assert_array_equal(sparse, dense)
