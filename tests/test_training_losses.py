"""The loss against a direct computation of the paper's equation 5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.losses import eq5_loss, eq5_terms


def _direct(u: np.ndarray, labels: np.ndarray, eps: float, form: str = "paper") -> float:
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
            inter = (m * uk).sum()
            num = 2 * (inter + eps) if form == "paper" else 2 * inter + eps
            dice += 1 - num / (m.sum() + uk.sum() + eps)
        total += ce / (c * n) + dice
    return total / b


def test_eq5_matches_direct_computation():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 5, 4, 6, 5, generator=g), dim=1)
    labels = torch.randint(0, 4, (2, 4, 6, 5), generator=g)  # class 4 absent: its Dice term is ~1
    for form in ("paper", "smooth"):
        for eps in (1e-5, 1.0):
            got = eq5_loss(probs, labels, eps, form).item()
            assert got == pytest.approx(_direct(probs.numpy(), labels.numpy(), eps, form), rel=1e-5)


def test_absent_class_predicted_nowhere_scores_minus_one_as_printed_and_zero_smooth():
    """A class absent from the patch and given (almost) no probability: the printed form rewards it with -1, the
    smooth form gives 0; with false mass both approach 1, the smooth one never goes below 0."""
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    probs = torch.zeros(1, 2, 4, 4, 4)
    probs[:, 0] = 1.0  # class 1 absent and predicted nowhere; class 0 perfect
    assert eq5_terms(probs, labels, 1e-5, "paper")[1].item() == pytest.approx(-1.0)
    assert eq5_terms(probs, labels, 1e-5, "smooth")[1].item() == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        p = torch.softmax(torch.randn(2, 3, 4, 4, 4, generator=g) * 5, dim=1)
        lab = torch.randint(0, 3, (2, 4, 4, 4), generator=g)
        lab[0] = 0  # classes 1 and 2 absent in the first sample
        assert eq5_terms(p, lab, 1.0, "smooth")[1].item() >= 0.0


def test_unknown_dice_form_is_rejected():
    with pytest.raises(ValueError, match="Dice form"):
        eq5_loss(torch.rand(1, 2, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long), dice="nnunet")


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
