"""The loss against a direct computation of the paper's equation 5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.losses import eq5_loss, eq5_terms


def _direct(u: np.ndarray, labels: np.ndarray, eps: float) -> float:
    """Equation 5 per sample by explicit loops over classes, averaged over the batch (float64)."""
    total = 0.0
    b, c = u.shape[:2]
    for s in range(b):
        n = labels[s].size
        ce = 0.0
        dice = 0.0
        for k in range(c):
            m = (labels[s] == k).astype(np.float64)
            uk = u[s, k].astype(np.float64)
            ce += -(m * np.log(uk)).sum()
            dice += 1 - 2 * ((m * uk).sum() + eps) / (m.sum() + uk.sum() + eps)
        total += ce / (c * n) + dice
    return total / b


def test_eq5_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 4, 6, 5, generator=g), dim=1)
    labels = torch.randint(0, 4, (2, 4, 6, 5), generator=g)  # class 4 absent: its Dice term is ~1
    for eps in (1e-5, 1.0):
        got = eq5_loss(probs, labels, eps).item()
        assert got == pytest.approx(_direct(probs.numpy(), labels.numpy(), eps), rel=1e-5)


def test_perfect_prediction_has_low_loss_and_gradient_flows():
    labels = torch.randint(0, 5, (1, 4, 4, 4))
    onehot = torch.nn.functional.one_hot(labels, 5).permute(0, 4, 1, 2, 3).float()
    ce, dice = eq5_terms(onehot * 0.999 + 0.0002, labels)
    assert ce.item() < 1e-3 and dice.item() < 1e-2
    logits = torch.randn(1, 5, 4, 4, 4, requires_grad=True)
    eq5_loss(torch.softmax(logits, 1), labels).backward()
    assert torch.isfinite(logits.grad).all()


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError):
        eq5_loss(torch.rand(1, 5, 4, 4, 4), torch.zeros(1, 4, 4, 5, dtype=torch.long))


def test_regularized_softmax_gradient_is_finite_on_flat_regions():
    """Where the softmax is spatially constant |grad S| = 0; the layer's gradient must not be 0 * inf = NaN."""
    from inference.model import RUNet, UNetConfig

    logits = torch.zeros(1, 5, 4, 4, 4, requires_grad=True)
    model = RUNet(UNetConfig(widths=(2, 4)))
    eq5_loss(model.activation(logits), torch.zeros(1, 4, 4, 4, dtype=torch.long)).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(model.activation.lam_raw.grad).all()
