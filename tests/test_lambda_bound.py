"""The lambda below which the regularized softmax is a plain softmax to float32 rounding, and its use at inference."""

from __future__ import annotations

import math

import pytest
import torch

from inference.model import RUNet, UNetConfig, fuse_batchnorm, plain_softmax_where_exact
from inference.regularized_softmax import (
    FLOAT32_UNIT_ROUNDOFF,
    RegularizedSoftmax,
    divergence_bound,
    negligible_lambda,
    regularized_softmax,
)


def _edgy_logits(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Float64 logits whose softmax jumps between near one-hot classes from voxel to voxel (the largest
    differences, so the largest divergence), plus a random part."""
    gen = torch.Generator().manual_seed(seed)
    b, c, d, h, w = shape
    z, y, x = torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w), indexing="ij")
    hot = torch.nn.functional.one_hot((z + 2 * y + 3 * x) % c, c).permute(3, 0, 1, 2).to(torch.float64)
    return 30.0 * hot.expand(b, c, d, h, w) + 3.0 * torch.randn(shape, dtype=torch.float64, generator=gen)


def test_the_bound_at_step_one_and_its_limits():
    assert divergence_bound(1.0) == pytest.approx(3.0 + math.sqrt(3.0))
    assert negligible_lambda(1.0) == pytest.approx(math.log1p(2.0**-24) / (2 * (3.0 + math.sqrt(3.0))))
    assert 6e-9 < negligible_lambda(1.0) < 7e-9
    assert divergence_bound(1e-3) == pytest.approx(6e-3)  # small steps: M = 6 step
    assert divergence_bound(50.0) == divergence_bound(1.0) == divergence_bound(0.5, iterations=4)
    with pytest.raises(ValueError):
        divergence_bound(-1.0)


@pytest.mark.parametrize("step,iterations", [(0.05, 1), (0.4, 1), (1.0, 1), (30.0, 1), (1.0, 3), (0.1, 2)])
def test_log_probability_ratios_stay_within_twice_lambda_times_the_bound(step, iterations):
    logits = _edgy_logits((2, 4, 5, 6, 7), seed=int(10 * step) + iterations)
    lam = 0.3
    u = regularized_softmax(logits, lam, step, iterations)
    s = torch.softmax(logits, dim=1)
    worst = (u.log() - s.log()).abs().max().item()
    bound = 2 * lam * divergence_bound(step, iterations)
    assert worst <= bound * (1 + 1e-9)
    assert worst > 0.05 * bound  # the edges do move the probabilities: the check above is not vacuous


def test_under_the_bound_float32_is_as_close_to_the_exact_softmax_as_the_plain_one():
    logits = (_edgy_logits((2, 5, 6, 7, 8), seed=1) / 6).to(torch.float32)
    exact = torch.softmax(logits.double(), dim=1)
    plain = torch.softmax(logits, dim=1)

    def rel_error(p: torch.Tensor) -> float:  # in float32 unit roundoffs, the worst voxel and class
        return ((p.double() - exact).abs() / exact).max().item() / FLOAT32_UNIT_ROUNDOFF

    rounding = rel_error(plain)  # the float32 softmax's own rounding: a few units (it grows with |logits|)
    for lam in (1e-12, 0.99 * negligible_lambda(1.0)):
        out = regularized_softmax(logits, lam, 1.0)
        assert torch.equal(out.argmax(1), plain.argmax(1))
        assert rel_error(out) <= rounding + 1.0
    far = regularized_softmax(logits, 1e3 * negligible_lambda(1.0), 1.0)
    assert rel_error(far) > rounding + 1.0  # above it, the regularization shows


def test_the_layer_says_when_it_is_a_plain_softmax():
    assert RegularizedSoftmax(step=1.0, lam_init=1e-12).is_plain_softmax  # the shipped lambda
    assert RegularizedSoftmax(step=1.0, lam_init=0.5 * negligible_lambda(1.0)).is_plain_softmax
    assert not RegularizedSoftmax(step=1.0, lam_init=2.0 * negligible_lambda(1.0)).is_plain_softmax
    assert not RegularizedSoftmax(step=1.0, lam_init=0.7).is_plain_softmax


@pytest.mark.parametrize("lam", [1e-12, 0.7])
def test_inference_copy_runs_a_plain_softmax_only_under_the_bound(lam):
    torch.manual_seed(0)
    model = RUNet(UNetConfig(widths=(2, 4, 8), lam_init=lam)).eval()
    net = plain_softmax_where_exact(fuse_batchnorm(model))
    assert isinstance(model.activation, RegularizedSoftmax)  # the checkpoint's model keeps its layer
    assert isinstance(net.activation, torch.nn.Softmax) == (lam < negligible_lambda(1.0))
    x = torch.randn(1, 1, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, out = model(x), net(x)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.equal(out.argmax(1), ref.argmax(1))
