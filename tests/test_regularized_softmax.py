import pytest
import torch

from inference.regularized_softmax import RegularizedSoftmax, div3d, grad3d, regularized_softmax


def _reference(logits, lam, step):
    """The layer written straight from DESIGN.md with the public grad3d / div3d."""
    s = torch.softmax(logits, dim=1)
    v = -step * grad3d(s)
    eta = v / torch.clamp(torch.linalg.vector_norm(v, dim=2, keepdim=True), min=1.0)
    return torch.softmax(logits - lam * div3d(eta), dim=1), eta


def test_grad3d_hand_computed():
    u = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 1, 2, 3, 4)
    g = grad3d(u)
    assert g.shape == (1, 1, 3, 2, 3, 4)
    assert torch.all(g[0, 0, 0, 0] == 12) and torch.all(g[0, 0, 0, 1] == 0)  # z: +12, zero on the last slice
    assert torch.all(g[0, 0, 1, :, :2] == 4) and torch.all(g[0, 0, 1, :, 2] == 0)
    assert torch.all(g[0, 0, 2, :, :, :3] == 1) and torch.all(g[0, 0, 2, :, :, 3] == 0)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 3, 5, 7, 9), (1, 2, 13, 1, 6), (3, 1, 4, 11, 2)])
def test_div_is_negative_adjoint_of_grad(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    u = torch.randn(shape, dtype=torch.float64, generator=gen)
    p = torch.randn((shape[0], shape[1], 3, *shape[2:]), dtype=torch.float64, generator=gen)
    lhs = (grad3d(u) * p).sum()
    rhs = -(u * div3d(p)).sum()
    assert abs(lhs - rhs) <= 1e-5 * max(abs(lhs), abs(rhs), 1e-12) + 1e-12
    assert div3d(p).shape == shape


def test_lambda_zero_is_softmax():
    logits = torch.randn(2, 5, 6, 7, 8)
    out = regularized_softmax(logits, 0.0, 1.0)
    assert torch.allclose(out, torch.softmax(logits, dim=1), atol=1e-6)


@pytest.mark.parametrize("lam,step", [(0.5, 1.0), (2.0, 0.3), (10.0, 5.0)])
def test_probabilities_positive_and_normalized(lam, step):
    logits = 4 * torch.randn(2, 5, 5, 6, 7, dtype=torch.float64)
    out = regularized_softmax(logits, lam, step)
    assert torch.all(out > 0)
    assert torch.allclose(out.sum(dim=1), torch.ones_like(out[:, 0]), atol=1e-12)


@pytest.mark.parametrize("step", [0.1, 1.0, 100.0])
def test_matches_design_equations_and_eta_is_bounded(step):
    logits = 5 * torch.randn(1, 5, 4, 9, 8, dtype=torch.float64)
    ref, eta = _reference(logits, 1.3, step)
    assert torch.linalg.vector_norm(eta, dim=2).max() <= 1 + 1e-12
    assert torch.allclose(regularized_softmax(logits, 1.3, step), ref, atol=1e-12)


def test_constant_label_is_a_fixed_point():
    logits = torch.zeros(1, 5, 6, 6, 6)
    logits[:, 2] = 8.0  # the same class everywhere: no edges, so TV changes nothing
    out = regularized_softmax(logits, 3.0, 1.0)
    assert torch.allclose(out, torch.softmax(logits, dim=1), atol=1e-7)
    assert torch.all(out.argmax(1) == 2)


def test_regularization_smooths_an_isolated_voxel():
    logits = torch.zeros(1, 2, 5, 5, 5)
    logits[:, 0] = 1.0
    logits[0, 1, 2, 2, 2] = 1.5  # one voxel of class 1 in a sea of class 0
    plain = torch.softmax(logits, dim=1)[0, 1, 2, 2, 2]
    smoothed = regularized_softmax(logits, 2.0, 1.0)[0, 1, 2, 2, 2]
    assert smoothed < plain


def test_gradcheck_reaches_lambda_and_logits():
    logits = torch.randn(1, 3, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda o, lmb: regularized_softmax(o, lmb, 0.7), (logits, lam))


def test_module_has_one_parameter_kept_nonnegative():
    layer = RegularizedSoftmax(step=1.0, lam_init=0.5)
    assert [n for n, _ in layer.named_parameters()] == ["lam"]
    with torch.no_grad():
        layer.lam.fill_(-3.0)
    logits = torch.randn(1, 5, 4, 4, 4)
    assert torch.allclose(layer(logits), torch.softmax(logits, dim=1), atol=1e-6)
    assert layer.lam_value == 0.0
    layer = RegularizedSoftmax(step=1.0, lam_init=0.5)
    torch.manual_seed(0)
    target = torch.softmax(torch.randn(1, 5, 4, 4, 4), dim=1)
    ((layer(torch.randn(1, 5, 4, 4, 4) * 3) - target) ** 2).sum().backward()
    assert layer.lam.grad is not None and torch.isfinite(layer.lam.grad) and abs(float(layer.lam.grad)) > 1e-6


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="B, C, D, H, W"):
        grad3d(torch.zeros(3, 3, 3))
    with pytest.raises(ValueError, match="3, D, H, W"):
        div3d(torch.zeros(1, 1, 2, 3, 3, 3))
    with pytest.raises(ValueError):
        RegularizedSoftmax(step=-1.0)
