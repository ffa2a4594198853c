"""The drifting loss.  The stop-gradient lives here and nowhere else."""

from __future__ import annotations

import torch

from .operators import FieldSpec, drift


def drift_loss(
    x: torch.Tensor, pos: torch.Tensor, operator: str, field: FieldSpec, stop_gradient: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and drift for generated samples x (N, D) against data pos (M, D); negatives are x.

    stop_gradient=True: L = mean_i |x_i - stopgrad(x_i + V(x_i))|^2, the frozen-field (JKO)
    step, whose gradient is exactly -(2/N) V.  stop_gradient=False (ablation): L = mean_i
    |V(x_i)|^2 differentiated through V and through the negatives.  Both values equal E|V|^2.
    Returns (loss scalar, V (N, D) detached).
    """
    if stop_gradient:
        with torch.no_grad():
            x_frozen = x.detach()
            v = drift(operator, x_frozen, pos, x_frozen, field)  # (N, D)
        target = (x + v).detach()
        loss = (x - target).square().sum(-1).mean()
        return loss, v
    v = drift(operator, x, pos, x, field)  # (N, D), differentiable in x and the negatives
    loss = v.square().sum(-1).mean()
    return loss, v.detach()
