"""The paper's equation 5: cross-entropy plus soft Dice, on the regularized softmax's output U.

For one sample with one-hot ground truth M (C, N voxels), probabilities U (C, N) and I_c = sum M_c U_c:

    CE   = -(1/C) sum_c <M_c, log U_c> / N
    Dice = sum_c (1 - 2 (I_c + eps) / (sum M_c + sum U_c + eps))     dice="paper" (the equation as printed)
    Dice = sum_c (1 - (2 I_c + eps) / (sum M_c + sum U_c + eps))     dice="smooth"
    loss = CE + Dice

The two Dice forms differ only where a class is absent from the patch (M_c = 0). There the printed form is
1 - 2 eps / (sum U_c + eps): it reaches -1 (a reward twice the size of a perfect present class) once the class's
whole probability mass in the patch falls below eps, and its gradient, 2 eps / (sum U_c + eps)^2, is largest just
there, so the network is pushed to drive every organ it does not see to exactly zero, and learns to under-segment.
The smooth form is sum U_c / (sum U_c + eps) there: 0 for a patch with no false mass, never negative, with a gradient
of at most 1 / eps; with eps = 1 (in voxels) a false-positive mass of v voxels costs v / (v + 1). For a present class
both forms equal 1 - DSC up to terms of order eps / (sum M_c + sum U_c).

Both terms are computed per sample and averaged over the batch, so that a batch split over processes (distributed
data parallel, gradients averaged) gives the same loss and gradient as one process with the whole batch.
"""

from __future__ import annotations

import torch

LOG_FLOOR = 1e-8  # U is clamped here before the log: float32 softmax can underflow to 0
DICE_FORMS = ("paper", "smooth")


def eq5_terms(
    probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5, dice: str = "paper"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, soft Dice), each a scalar averaged over the batch.

    Args:
        probs: (B, C, D, H, W) class probabilities U (any float dtype; computed in float32).
        labels: (B, D, H, W) integer labels in 0..C-1.
        eps: the smoothing term of the soft Dice, in voxels.
        dice: "paper" (the equation as printed) or "smooth" (no reward below 0 for absent classes); see above.
    """
    if probs.dim() < 3 or labels.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(
            f"probs (B, C, ...) and labels (B, ...) disagree: {tuple(probs.shape)} vs {tuple(labels.shape)}"
        )
    if dice not in DICE_FORMS:
        raise ValueError(f"unknown Dice form {dice!r}; choose one of {', '.join(DICE_FORMS)}")
    u = probs.float().flatten(2)  # (B, C, N)
    c = u.shape[1]
    m = torch.nn.functional.one_hot(labels.long().flatten(1), c).transpose(1, 2).to(u.dtype)  # (B, C, N)
    ce = -(m * torch.log(u.clamp_min(LOG_FLOOR))).sum(dim=(1, 2)) / (c * u.shape[2])
    inter = (m * u).sum(dim=2)
    numerator = 2 * (inter + eps) if dice == "paper" else 2 * inter + eps
    dice_c = 1 - numerator / (m.sum(dim=2) + u.sum(dim=2) + eps)
    return ce.mean(), dice_c.sum(dim=1).mean()


def eq5_loss(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-5, dice: str = "paper") -> torch.Tensor:
    """CE + soft Dice of :func:`eq5_terms` (a scalar)."""
    ce, dice_term = eq5_terms(probs, labels, eps, dice)
    return ce + dice_term
