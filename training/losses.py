"""The paper's equation 5: cross-entropy plus soft Dice, on the regularized softmax's output U.

For one sample with one-hot ground truth M (C, N voxels) and probabilities U (C, N):

    CE   = -(1/C) sum_c <M_c, log U_c> / N
    Dice = sum_c (1 - 2 (sum M_c U_c + eps) / (sum M_c + sum U_c + eps))
    loss = CE + Dice

Both terms are computed per sample and averaged over the batch, so that a batch split over processes (distributed
data parallel, gradients averaged) gives the same loss and gradient as one process with the whole batch.
"""

from __future__ import annotations

import torch

LOG_FLOOR = 1e-8  # U is clamped here before the log: float32 softmax can underflow to 0


def eq5_terms(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, soft Dice), each a scalar averaged over the batch.

    Args:
        probs: (B, C, D, H, W) class probabilities U (any float dtype; computed in float32).
        labels: (B, D, H, W) integer labels in 0..C-1.
        eps: the smoothing term of the soft Dice.
    """
    if probs.dim() < 3 or labels.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(
            f"probs (B, C, ...) and labels (B, ...) disagree: {tuple(probs.shape)} vs {tuple(labels.shape)}"
        )
    u = probs.float().flatten(2)  # (B, C, N)
    c = u.shape[1]
    m = torch.nn.functional.one_hot(labels.long().flatten(1), c).transpose(1, 2).to(u.dtype)  # (B, C, N)
    ce = -(m * torch.log(u.clamp_min(LOG_FLOOR))).sum(dim=(1, 2)) / (c * u.shape[2])
    inter = (m * u).sum(dim=2)
    dice = (1 - 2 * (inter + eps) / (m.sum(dim=2) + u.sum(dim=2) + eps)).sum(dim=1)
    return ce.mean(), dice.mean()


def eq5_loss(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """CE + soft Dice of :func:`eq5_terms` (a scalar)."""
    ce, dice = eq5_terms(probs, labels, eps)
    return ce + dice
