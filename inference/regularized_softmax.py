"""TV-regularized softmax solved with one primal-dual iteration (the RUnet paper, section 2.1).

For logits ``o`` of shape (B, C, D, H, W) (axes: batch, class, z, y, x) the layer returns

    S   = softmax_C(o)
    V   = -step * grad(S)
    eta = V / max(1, |V|_2)         (norm over the 3 spatial components, per voxel and class)
    U   = softmax_C(o - lam * div(eta))

``grad`` takes forward differences along z, y, x with zero across the last slice/row/column (Neumann) and ``div``
is its negative adjoint, so that <grad u, p> = -<u, div p>. With ``lam = 0`` the layer is a plain softmax.
More iterations of the same primal-dual recursion (``iterations > 1``) repeat, from U_0 = S and eta_0 = 0,

    eta_k = proj(eta_{k-1} - step * grad(U_{k-1}))      proj(V) = V / max(1, |V|_2)
    U_k   = softmax_C(o - lam * div(eta_k))

whose first iteration is the layer above.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

_SPATIAL_DIMS = (2, 3, 4)  # z, y, x in a (B, C, D, H, W) tensor


def _check_5d(t: torch.Tensor, name: str) -> None:
    if t.dim() != 5:
        raise ValueError(f"{name} must have shape (B, C, D, H, W), got {tuple(t.shape)}")


def _forward_differences(u: torch.Tensor, differentiable: bool) -> list[torch.Tensor]:
    """The z, y, x components of grad3d(u), each of u's shape (B, C, D, H, W), zero across the last slice/row/column.

    ``differentiable=False`` writes the differences straight into the buffers (no temporaries, no autograd).
    """
    parts = []
    for dim in _SPATIAL_DIMS:
        out = torch.zeros_like(u)
        n = u.shape[dim]
        if n > 1:
            ahead, here = u.narrow(dim, 1, n - 1), u.narrow(dim, 0, n - 1)
            if differentiable:
                out.narrow(dim, 0, n - 1).copy_(ahead - here)
            else:
                torch.sub(ahead, here, out=out.narrow(dim, 0, n - 1))
        parts.append(out)
    return parts


def grad3d(u: torch.Tensor) -> torch.Tensor:
    """Forward differences of ``u`` along z, y, x.

    Args:
        u: tensor of shape (B, C, D, H, W).
    Returns:
        tensor of shape (B, C, 3, D, H, W); component 0 is d/dz, 1 is d/dy, 2 is d/dx (unit voxel spacing),
        each zero across the last slice, row and column respectively.
    """
    _check_5d(u, "u")
    return torch.stack(_forward_differences(u, differentiable=True), dim=2)


def div3d(p: torch.Tensor) -> torch.Tensor:
    """Discrete divergence, the negative adjoint of :func:`grad3d`.

    Args:
        p: tensor of shape (B, C, 3, D, H, W), components ordered z, y, x.
    Returns:
        tensor of shape (B, C, D, H, W) with <grad3d(u), p> = -<u, div3d(p)> for every u.
    """
    if p.dim() != 6 or p.shape[2] != 3:
        raise ValueError(f"p must have shape (B, C, 3, D, H, W), got {tuple(p.shape)}")
    out = torch.zeros_like(p[:, :, 0])
    for comp, dim in enumerate(_SPATIAL_DIMS):
        q = p[:, :, comp]
        n = q.shape[dim]
        if n == 1:
            continue
        inner = q.narrow(dim, 0, n - 1)  # the components that grad3d can make non-zero
        # backward difference: d_k = q_k - q_{k-1}, with q_{-1} = 0 and q_{n-1} treated as 0
        zeros = torch.zeros_like(q.narrow(dim, 0, 1))
        out = out + torch.cat([inner, zeros], dim=dim) - torch.cat([zeros, inner], dim=dim)
    return out


def regularized_softmax(
    logits: torch.Tensor, lam: float | torch.Tensor, step: float | torch.Tensor, iterations: int = 1
) -> torch.Tensor:
    """The TV-regularized softmax, solved with ``iterations`` primal-dual iterations (the paper: 1).

    Args:
        logits: (B, C, D, H, W) class scores.
        lam: the regularization weight lambda >= 0 (float or 0-d tensor; gradients flow through a tensor).
        step: the dual step s = tau * lambda of DESIGN.md, a fixed hyper-parameter >= 0.
        iterations: primal-dual iterations from eta_0 = 0, >= 1.
    Returns:
        probabilities of the logits' shape and dtype, positive and summing to 1 over C at every voxel.
    """
    _check_5d(logits, "logits")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    needs_graph = torch.is_grad_enabled() and (logits.requires_grad or (torch.is_tensor(lam) and lam.requires_grad))
    if not needs_graph and iterations == 1:
        return regularized_softmax_inplace(logits, lam, step)
    return regularized_softmax_graph(logits, lam, step, iterations)


def regularized_softmax_graph(
    logits: torch.Tensor, lam: float | torch.Tensor, step: float | torch.Tensor, iterations: int = 1
) -> torch.Tensor:
    """:func:`regularized_softmax` written without in-place updates, so that autograd can differentiate it."""
    u = torch.softmax(logits, dim=1)
    eta: list[torch.Tensor] | None = None  # z, y, x components of the dual variable; eta_0 = 0
    for _ in range(iterations):
        # grad3d / div3d written out per axis: the same arithmetic without the (B, C, 3, D, H, W) intermediates.
        g = _forward_differences(u, differentiable=True)
        v = [-step * gd for gd in g] if eta is None else [e - step * gd for e, gd in zip(eta, g)]
        sq = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
        # eta = V / max(1, |V|) = V / sqrt(max(1, |V|^2)): the clamp comes before the square root, whose gradient
        # at |V| = 0 would otherwise be 0 * inf = NaN.
        scale = 1.0 / torch.sqrt(torch.clamp(sq, min=1.0))
        eta = [vd * scale for vd in v]
        div = torch.zeros_like(u)
        for ed, dim in zip(eta, _SPATIAL_DIMS):
            div += ed
            n = u.shape[dim]
            if n > 1:
                div.narrow(dim, 1, n - 1).sub_(ed.narrow(dim, 0, n - 1))
        u = torch.softmax(logits - lam * div, dim=1)
    return u


def regularized_softmax_inplace(
    logits: torch.Tensor, lam: float | torch.Tensor, step: float | torch.Tensor
) -> torch.Tensor:
    """:func:`regularized_softmax` for inference: the same arithmetic in 5 buffers of the logits' shape, in place.

    Used when no gradient is needed; it allocates about a third of what the autograd-friendly version does and
    makes fewer passes over memory. Same inputs and result (to rounding) as :func:`regularized_softmax`.
    """
    s = torch.softmax(logits, dim=1)
    g = _forward_differences(s, differentiable=False)
    # factor = -step / max(1, step * |grad S|), computed in the buffer of S (no longer needed)
    factor = torch.mul(g[0], g[0], out=s)
    factor.addcmul_(g[1], g[1]).addcmul_(g[2], g[2]).sqrt_().mul_(step).clamp_(min=1.0).reciprocal_().mul_(-step)
    div = None
    for gd, dim in zip(g, _SPATIAL_DIMS):
        eta = gd.mul_(factor)
        n = eta.shape[dim]
        if div is None:
            div = eta.clone()
        else:
            div.add_(eta)
        if n > 1:
            div.narrow(dim, 1, n - 1).sub_(eta.narrow(dim, 0, n - 1))
    return torch.softmax(torch.sub(logits, div.mul_(lam)), dim=1)


FLOAT32_UNIT_ROUNDOFF = 2.0**-24  # u: round-to-nearest float32 moves a number by at most u times its magnitude


def divergence_bound(step: float, iterations: int = 1) -> float:
    """M: an upper bound on |div(eta)| at any voxel and class, for any logits and any volume shape.

    One iteration (eta = V / max(1, |V|_2), V = -step * grad(S), S = softmax(o) in (0, 1)): every forward
    difference g_d of S lies in (-1, 1), and |g_d| <= |g|_2, so per component |eta_d| = step |g_d| / max(1, step |g|_2)
    <= min(step, 1) and per voxel |eta|_2 = min(step |g|_2, 1) <= min(sqrt(3) step, 1), hence
    sum_d |eta_d(x)| <= sqrt(3) |eta(x)|_2 <= min(3 step, sqrt(3)). div(eta)(x) = sum_d eta_d(x) - eta_d(x - e_d)
    (terms outside the volume are 0), so

        |div(eta)(x)| <= sum_d |eta_d(x)| + sum_d |eta_d(x - e_d)| <= min(3 step, sqrt(3)) + 3 min(step, 1) = M.

    More iterations project eta onto |eta|_2 <= 1 too, but eta_k no longer scales with the step: M = sqrt(3) + 3.
    """
    if step < 0 or iterations < 1:
        raise ValueError(f"step must be >= 0 and iterations >= 1, got step={step}, iterations={iterations}")
    if iterations > 1:
        return math.sqrt(3.0) + 3.0
    return min(3.0 * step, math.sqrt(3.0)) + 3.0 * min(step, 1.0)


def negligible_lambda(step: float, iterations: int = 1) -> float:
    """lambda*: below it the regularized softmax equals the plain softmax to float32 rounding (DESIGN.md's layer).

    Derivation. U = softmax_C(o + delta) with delta_c = -lambda div(eta)_c, so |delta_c| <= lambda M
    (:func:`divergence_bound`). With S = softmax_C(o),

        U_c / S_c = exp(delta_c) / sum_k S_k exp(delta_k),

    and the denominator is a convex combination of the exp(delta_k), between exp(min delta) and exp(max delta).
    Hence |log(U_c / S_c)| <= max delta - min delta <= 2 lambda M at every voxel and class, and for two classes
    a, b: log(U_a / U_b) = log(S_a / S_b) + delta_a - delta_b, so their order can flip only where
    |log(S_a / S_b)| <= 2 lambda M. Require 2 lambda M <= log(1 + u), u = 2^-24 the float32 unit roundoff:

        lambda* = log1p(2^-24) / (2 M)       (step 1, one iteration: M = 3 + sqrt(3), lambda* = 6.30e-9)

    Below lambda*, |U_c - S_c| <= u S_c: the exact regularized probabilities differ from the exact softmax by less
    than one float32 rounding of S_c, less than the error of the float32 softmax itself (exp, sum and division
    each round), and the argmax can change only between two classes whose probabilities agree to within a factor
    1 + u, which round to the same or adjacent float32 values and which a float32 softmax cannot order reliably
    anyway. bfloat16 and float16 round more coarsely, so the bound holds for them too. Replacing the layer by a
    plain softmax there is therefore exact to float32 rounding (it is not a guarantee of equal bits: a different
    but equally rounded computation may differ in the last place).
    """
    return math.log1p(FLOAT32_UNIT_ROUNDOFF) / (2.0 * divergence_bound(step, iterations))


LAM_FLOOR = 1e-12  # lambda of a stored 0: softplus cannot reach 0, and 1e-12 changes no probability in float32


def lam_to_raw(lam: float) -> float:
    """The unconstrained value whose softplus is ``lam`` (lam >= 0; 0 maps to softplus^-1(LAM_FLOOR) = -27.6)."""
    lam = max(float(lam), LAM_FLOOR)
    return lam + math.log(-math.expm1(-lam))  # log(exp(lam) - 1), stable for small and large lam


def upgrade_lambda_keys(state: dict) -> dict:
    """A state dict with every ``<prefix>lam`` of the clamped parametrization (lambda used as max(lam, 0)) turned into
    the ``<prefix>lam_raw`` that gives the same lambda (a stored value <= 0 becomes LAM_FLOOR); other keys unchanged."""
    out = {}
    for key, value in state.items():
        if (key == "lam" or key.endswith(".lam")) and f"{key}_raw" not in state:
            out[f"{key}_raw"] = torch.tensor(lam_to_raw(float(value)), dtype=value.dtype)
        else:
            out[key] = value
    return out


class RegularizedSoftmax(nn.Module):
    """The regularized softmax as a layer holding lambda as its single parameter.

    lambda = softplus(lam_raw), with ``lam_raw`` the stored, unconstrained parameter: lambda stays > 0 and its
    gradient, d lambda / d lam_raw = sigmoid(lam_raw), is never 0, so an optimizer that pushes lambda towards 0 can
    always bring it back (a clamp at 0 has no gradient below 0, where lambda would die for good). Softplus rather than
    exp: away from 0 it is the identity plus a constant, so an optimizer step moves lambda by the same amount as a
    step on lambda itself (exp would make every step a relative one and blow large values up). ``learnable=False``
    keeps lambda fixed at ``lam_init`` (the parameter does not require a gradient).

    Checkpoints written before this parametrization stored lambda itself as ``lam`` (used as max(lam, 0)); they
    load unchanged: the stored value is converted to ``lam_raw`` (a stored value <= 0 becomes lambda = 1e-12).
    """

    def __init__(self, step: float = 1.0, lam_init: float = 1.0, learnable: bool = True, iterations: int = 1) -> None:
        super().__init__()
        if step < 0 or lam_init < 0 or iterations < 1:
            raise ValueError(
                f"step and lam_init must be >= 0 and iterations >= 1, got step={step}, lam_init={lam_init}, "
                f"iterations={iterations}"
            )
        self.step = float(step)
        self.iterations = int(iterations)
        self.lam_raw = nn.Parameter(torch.tensor(lam_to_raw(lam_init)), requires_grad=learnable)

    @property
    def lam(self) -> torch.Tensor:
        """lambda = softplus(lam_raw) > 0, a 0-d tensor that carries the gradient to ``lam_raw``."""
        return F.softplus(self.lam_raw)

    @property
    def lam_value(self) -> float:
        """The lambda in use, as a float."""
        return float(self.lam.detach())

    @property
    def is_plain_softmax(self) -> bool:
        """True when lambda < :func:`negligible_lambda` of this step and iteration count: the layer's output equals
        a plain softmax of the logits to float32 rounding, so inference may run the plain softmax instead."""
        return self.lam_value < negligible_lambda(self.step, self.iterations)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) logits -> probabilities of the same shape."""
        return regularized_softmax(logits, self.lam.to(logits.dtype), self.step, self.iterations)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if prefix + "lam" in state_dict:
            old = {prefix + "lam": state_dict.pop(prefix + "lam")}
            state_dict.update(upgrade_lambda_keys(old) if prefix + "lam_raw" not in state_dict else {})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"step={self.step}, iterations={self.iterations}, learnable={self.lam_raw.requires_grad}"
