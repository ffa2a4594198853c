"""How far a drift field is from a gradient field: the antisymmetric part of its Jacobian.

A field V on R^D (D >= 2) is conservative (V = grad phi) exactly when its Jacobian J = dV/dx is symmetric
everywhere.  `asymmetry` measures, at each evaluation point x_i, ||A_i|| / ||S_i|| with A = (J - J^T)/2,
S = (J + J^T)/2 (Frobenius norms), and returns the root mean square over the points: 0 to round-off for the
Gaussian mean-shift field (h^2 times a score difference), for every kernel under the sharp normalisation,
for `score` and `mmd` (gradients by construction); clearly non-zero for per-side mean-shift with any other
kernel ("Drifting Fields are not Conservative", arXiv 2604.06333).

J_i is the derivative of V(x_i) with respect to x_i alone, with the data and the negatives held fixed
(when the negatives are the points themselves, a frozen copy: the self-pair mask still removes x_i).  For
operators whose value at one point depends on every evaluation point (the joint row-and-column softmax of
`deng` or normalization = "joint", Sinkhorn's column potentials), J_i is taken point by point, one operator
evaluation per point: pass a few hundred points at most.  Otherwise one backward pass per coordinate gives
every J_i at once.  Autograd runs on the dense operators, in the inputs' dtype (float64 for round-off).
"""

from __future__ import annotations

import dataclasses

import torch

from .field import FieldSpec
from .operators import drift

def coupled(operator: str, field: FieldSpec) -> bool:
    """Whether V at one evaluation point depends on the other evaluation points: the joint (column) softmax,
    deng's batch-RMS drift_norm, Sinkhorn's column potentials."""
    if operator == "sinkhorn":
        return field.sinkhorn_iters > 0
    if operator not in ("meanshift", "deng"):
        return False
    return field.normalisation_or("joint" if operator == "deng" else "per_side") == "joint" or (
        operator == "deng" and field.drift_norm)


def jacobians(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, operator: str, field: FieldSpec) -> torch.Tensor:
    """J_i[a, b] = d V_a(x_i) / d x_i,b with the samples fixed (module docstring).  -> (N, D, D)."""
    field = dataclasses.replace(field, backend="dense")
    x, pos, neg = x.detach(), pos.detach(), neg.detach()
    if coupled(operator, field):
        return torch.stack([_own_jacobian(i, x, pos, neg, operator, field) for i in range(x.shape[0])])
    with torch.enable_grad():
        delta = torch.zeros_like(x, requires_grad=True)
        v = drift(operator, x + delta, pos, neg, field)  # (N, D): row i depends on x_i only
        rows = [torch.autograd.grad(v[:, a].sum(), delta, retain_graph=a + 1 < x.shape[1])[0]
                for a in range(x.shape[1])]  # D x (N, D)
    return torch.stack(rows, dim=1)  # (N, D, D)


def _own_jacobian(i: int, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, operator: str,
                  field: FieldSpec) -> torch.Tensor:
    """d V(x_i) / d x_i with every other evaluation point fixed.  -> (D, D)."""
    with torch.enable_grad():
        delta = torch.zeros_like(x[i], requires_grad=True)
        moved = torch.cat([x[:i], (x[i] + delta).unsqueeze(0), x[i + 1:]])  # (N, D)
        v = drift(operator, moved, pos, neg, field)[i]  # (D,)
        rows = [torch.autograd.grad(v[a], delta, retain_graph=a + 1 < x.shape[1])[0] for a in range(x.shape[1])]
    return torch.stack(rows)


def asymmetry(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, operator: str, field: FieldSpec) -> float:
    """RMS over the points x of ||antisymmetric part of dV/dx|| / ||symmetric part|| (Frobenius), D >= 2."""
    if x.shape[1] < 2:
        raise ValueError(f"asymmetry needs dim >= 2 (every 1-D field is a gradient), got dim {x.shape[1]}")
    jac = jacobians(x, pos, neg, operator, field)  # (N, D, D)
    anti = 0.5 * (jac - jac.transpose(1, 2))
    sym = 0.5 * (jac + jac.transpose(1, 2))
    ratio = anti.square().sum((1, 2)) / sym.square().sum((1, 2)).clamp_min(torch.finfo(jac.dtype).tiny)  # (N,)
    return float(ratio.mean().sqrt())
