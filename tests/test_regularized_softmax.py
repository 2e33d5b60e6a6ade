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


def test_module_has_one_parameter_and_starts_at_lam_init():
    layer = RegularizedSoftmax(step=1.0, lam_init=0.5)
    assert [n for n, _ in layer.named_parameters()] == ["lam_raw"]
    assert layer.lam_value == pytest.approx(0.5, rel=1e-6)
    logits = torch.randn(1, 5, 4, 4, 4, dtype=torch.float64)
    assert torch.allclose(layer.double()(logits), regularized_softmax(logits, 0.5, 1.0), atol=1e-7)


@pytest.mark.parametrize("raw", [-60.0, -27.6, -3.0, 0.0, 4.0, 40.0])
def test_lambda_positive_with_a_nonzero_gradient_for_any_stored_value(raw):
    layer = RegularizedSoftmax(step=1.0, lam_init=1.0).double()
    with torch.no_grad():
        layer.lam_raw.fill_(raw)
    assert layer.lam_value > 0.0
    gen = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(1, 3, 4, 5, 6, dtype=torch.float64, generator=gen)
    target = torch.softmax(torch.randn(1, 3, 4, 5, 6, dtype=torch.float64, generator=gen), dim=1)
    ((layer(logits) - target) ** 2).sum().backward()
    grad = layer.lam_raw.grad
    assert torch.isfinite(grad) and grad != 0.0
    # chain rule by hand: dL/dlam_raw = dL/dlam * sigmoid(lam_raw)
    lam = layer.lam.detach().requires_grad_(True)
    ((regularized_softmax(logits, lam, 1.0) - target) ** 2).sum().backward()
    assert torch.allclose(grad, lam.grad * torch.sigmoid(torch.tensor(raw, dtype=torch.float64)), rtol=1e-9)


def test_gradcheck_through_the_softplus_parametrization():
    layer = RegularizedSoftmax(step=0.7, lam_init=0.8).double()
    logits = torch.randn(1, 3, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    raw = layer.lam_raw.detach().clone().requires_grad_(True)
    call = lambda o, r: torch.func.functional_call(layer, {"lam_raw": r}, (o,))  # noqa: E731
    assert torch.autograd.gradcheck(call, (logits, raw))
    assert torch.autograd.gradcheck(call, (logits, torch.tensor(-20.0, dtype=torch.float64, requires_grad=True)))


def test_fixed_lambda_does_not_learn():
    layer = RegularizedSoftmax(step=1.0, lam_init=2.0, learnable=False)
    assert not layer.lam_raw.requires_grad and list(layer.parameters())[0].requires_grad is False
    assert layer.lam_value == pytest.approx(2.0, rel=1e-6)


@pytest.mark.parametrize("stored,lam", [(-3.0, 1e-12), (0.0, 1e-12), (0.7, 0.7), (25.0, 25.0)])
def test_old_state_dict_with_lam_loads_as_the_same_lambda(stored, lam):
    layer = RegularizedSoftmax(step=1.0, lam_init=1.0)
    layer.load_state_dict({"lam": torch.tensor(stored)})
    assert layer.lam_value == pytest.approx(lam, rel=1e-5)
    logits = 4 * torch.randn(1, 5, 4, 6, 6)
    old = regularized_softmax(logits, max(stored, 0.0), 1.0)  # the old layer used max(lam, 0)
    assert torch.allclose(layer(logits), old, atol=1e-6)


def test_more_iterations_follow_the_recursion():
    gen = torch.Generator().manual_seed(5)
    logits = 4 * torch.randn(1, 4, 5, 6, 7, dtype=torch.float64, generator=gen)
    lam, step = 1.5, 0.8
    u, eta = torch.softmax(logits, dim=1), torch.zeros((1, 4, 3, 5, 6, 7), dtype=torch.float64)
    for _ in range(3):  # DESIGN.md's recursion with the public grad3d / div3d
        v = eta - step * grad3d(u)
        eta = v / torch.clamp(torch.linalg.vector_norm(v, dim=2, keepdim=True), min=1.0)
        u = torch.softmax(logits - lam * div3d(eta), dim=1)
    assert torch.allclose(regularized_softmax(logits, lam, step, iterations=3), u, atol=1e-12)
    assert not torch.allclose(regularized_softmax(logits, lam, step, iterations=1), u, atol=1e-6)
    with pytest.raises(ValueError, match="iterations"):
        regularized_softmax(logits, lam, step, iterations=0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="B, C, D, H, W"):
        grad3d(torch.zeros(3, 3, 3))
    with pytest.raises(ValueError, match="3, D, H, W"):
        div3d(torch.zeros(1, 1, 2, 3, 3, 3))
    with pytest.raises(ValueError):
        RegularizedSoftmax(step=-1.0)
