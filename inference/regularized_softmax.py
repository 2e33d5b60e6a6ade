"""TV-regularized softmax solved with one primal-dual iteration (the RUnet paper, section 2.1).

For logits ``o`` of shape (B, C, D, H, W) (axes: batch, class, z, y, x) the layer returns

    S   = softmax_C(o)
    V   = -step * grad(S)
    eta = V / max(1, |V|_2)         (norm over the 3 spatial components, per voxel and class)
    U   = softmax_C(o - lam * div(eta))

``grad`` takes forward differences along z, y, x with zero across the last slice/row/column (Neumann) and ``div``
is its negative adjoint, so that <grad u, p> = -<u, div p>. With ``lam = 0`` the layer is a plain softmax.
"""

from __future__ import annotations

import torch
from torch import nn

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


def regularized_softmax(logits: torch.Tensor, lam: float | torch.Tensor, step: float | torch.Tensor) -> torch.Tensor:
    """One primal-dual iteration of the TV-regularized softmax.

    Args:
        logits: (B, C, D, H, W) class scores.
        lam: the regularization weight lambda >= 0 (float or 0-d tensor; gradients flow through a tensor).
        step: the dual step s = tau * lambda of DESIGN.md, a fixed hyper-parameter >= 0.
    Returns:
        probabilities of the logits' shape and dtype, positive and summing to 1 over C at every voxel.
    """
    _check_5d(logits, "logits")
    needs_graph = torch.is_grad_enabled() and (logits.requires_grad or (torch.is_tensor(lam) and lam.requires_grad))
    if not needs_graph:
        return _regularized_softmax_inplace(logits, lam, step)
    return _regularized_softmax_graph(logits, lam, step)


def _regularized_softmax_graph(
    logits: torch.Tensor, lam: float | torch.Tensor, step: float | torch.Tensor
) -> torch.Tensor:
    """:func:`regularized_softmax` written without in-place updates, so that autograd can differentiate it."""
    s = torch.softmax(logits, dim=1)
    # grad3d / div3d written out per axis: the same arithmetic without the (B, C, 3, D, H, W) intermediates.
    g = _forward_differences(s, differentiable=True)
    sq = g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
    # eta = V / max(1, |V|) with V = -step * grad(S); max(1, step |g|) = sqrt(max(1, step^2 |g|^2)): the clamp comes
    # before the square root, whose gradient at |g| = 0 would otherwise be 0 * inf = NaN.
    factor = -step / torch.sqrt(torch.clamp(sq * (step * step), min=1.0))
    div = torch.zeros_like(s)
    for gd, dim in zip(g, _SPATIAL_DIMS):
        eta = gd * factor
        div += eta
        n = s.shape[dim]
        if n > 1:
            div.narrow(dim, 1, n - 1).sub_(eta.narrow(dim, 0, n - 1))
    return torch.softmax(logits - lam * div, dim=1)


def _regularized_softmax_inplace(
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


class RegularizedSoftmax(nn.Module):
    """The regularized softmax as a layer holding lambda as its single learnable parameter.

    lambda is used as max(lambda, 0), so the layer never sees a negative weight; training code may also clamp the
    stored value in place after each optimizer step.
    """

    def __init__(self, step: float = 1.0, lam_init: float = 1.0) -> None:
        super().__init__()
        if step < 0 or lam_init < 0:
            raise ValueError(f"step and lam_init must be >= 0, got step={step}, lam_init={lam_init}")
        self.step = float(step)
        self.lam = nn.Parameter(torch.tensor(float(lam_init)))

    @property
    def lam_value(self) -> float:
        """The lambda in use (the stored parameter clamped at 0)."""
        return float(self.lam.detach().clamp(min=0.0))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) logits -> probabilities of the same shape."""
        return regularized_softmax(logits, self.lam.clamp(min=0.0).to(logits.dtype), self.step)

    def extra_repr(self) -> str:
        return f"step={self.step}"
