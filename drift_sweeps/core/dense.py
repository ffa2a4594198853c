"""Dense drift operators: the reference implementation, one registry `DENSE_OPERATORS`.

Each operator builds the whole (N, M) kernel matrix (and (N, M, I, D) displacements on the
torus), so memory is O(N M).  This is the definition the streaming operators in
`streaming.py` are tested against, and the path used when gradients must flow through V
(the no-stop-gradient ablation): everything here is differentiable torch code.
Signature: ``operator(x, pos, neg, field) -> V`` as documented in `operators.py`.

Normalisation (`field.normalization`, meanshift and deng): how the kernel weights k(x_i, y_j) of
one side are normalised before they weight the displacements y_j - x_i:
- per_side: a softmax over the data and one over the negatives, V = E_p[k (y-x)]/E_p[k] -
  E_q[k (y-x)]/E_q[k] (mean-shift's own);
- joint: the original algorithm's row-and-column softmax over data and negatives together (deng's own);
- none: raw weights over the batch size, V = E_p[k (y-x)] - E_q[k (y-x)];
- sharp (arXiv 2604.06333): each side divided by the sum of the sharp kernel k# (kernels.py),
  V = E_p[k (y-x)]/E_p[k#] - E_q[k (y-x)]/E_q[k#] = h^2 grad_x [log (k# * p) - log (k# * q)]: the
  score difference of k#-smoothed densities, a gradient field for every radial kernel (for the
  Gaussian, k# = k and it is mean-shift).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from . import nystrom as _nystrom
from .field import FieldSpec, Operator, sum_over_scales
from .geometry import displacement, image_offsets
from .kernels import Kernel
from ..spine.registry import Registry

DENSE_OPERATORS: Registry[Operator] = Registry("operator")

_MASK = -1e30  # log-weight that removes a pair (finite, so softmax/autograd stay NaN-free)


def _image_terms(x: torch.Tensor, y: torch.Tensor, field: FieldSpec, h: float,
                 kernel: Optional[Kernel] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image displacements and log-kernels (the field's kernel, or `kernel`).  -> (N, M, I, D), (N, M, I)."""
    dim = x.shape[-1]
    d = displacement(x, y, field.periodic)  # (N, M, D)
    shells = field.shells(h, dim)
    if shells > 0:
        d = d.unsqueeze(2) + image_offsets(dim, shells, x.device).to(x.dtype)  # (N, M, I, D)
    else:
        d = d.unsqueeze(2)  # (N, M, 1, D)
    dist = d.square().sum(-1).clamp_min(1e-30).sqrt()  # (N, M, I)
    return d, (kernel or field.kernel_entry)(dist, h, dim)


def _logk(x: torch.Tensor, y: torch.Tensor, field: FieldSpec, bandwidth: float | None = None,
          kernel: Optional[Kernel] = None) -> torch.Tensor:
    """Log-kernel matrix, summed over periodic images on the torus.  (N, D), (M, D) -> (N, M)."""
    h = field.bandwidth if bandwidth is None else bandwidth
    _, lk = _image_terms(x, y, field, h, kernel)  # (N, M, I)
    return lk[..., 0] if lk.shape[-1] == 1 else torch.logsumexp(lk, dim=-1)


def _mask_self(logits: torch.Tensor) -> torch.Tensor:
    """Remove the diagonal (x_i paired with itself).  (N, N) -> (N, N)."""
    eye = torch.eye(logits.shape[0], logits.shape[1], dtype=torch.bool, device=logits.device)
    return logits.masked_fill(eye, _MASK)


def weighted_displacement(
    w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, field: FieldSpec, bandwidth: float | None = None
) -> torch.Tensor:
    """sum_j w_ij (y_j - x_i); on the torus the kernel-weighted mean over periodic images.  -> (N, D)."""
    if not field.periodic:
        return w @ y - w.sum(1, keepdim=True) * x
    d, lk = _image_terms(x, y, field, field.bandwidth if bandwidth is None else bandwidth)
    pair_disp = (torch.softmax(lk, dim=-1).unsqueeze(-1) * d).sum(2)  # (N, M, D)
    return torch.einsum("nm,nmd->nd", w, pair_disp)


def _neg_logk(x: torch.Tensor, neg: torch.Tensor, field: FieldSpec, bandwidth: float | None = None,
              kernel: Optional[Kernel] = None) -> torch.Tensor:
    logits = _logk(x, neg, field, bandwidth, kernel)  # (N, K)
    return _mask_self(logits) if field.neg_is_x else logits


def one_side(x: torch.Tensor, y: torch.Tensor, field: FieldSpec, mask: bool) -> torch.Tensor:
    """One per-side term E_y[k (y-x)] / E_y[k] (mask: y is x, self-pairs left out).  -> (N, D)."""
    logits = _logk(x, y, field)  # (N, M)
    return weighted_displacement(torch.softmax(_mask_self(logits) if mask else logits, dim=1), x, y, field)


def _per_side(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    w_pos = torch.softmax(_logk(x, pos, field, h), dim=1)  # (N, M)
    w_neg = torch.softmax(_neg_logk(x, neg, field, h), dim=1)  # (N, K)
    return weighted_displacement(w_pos, x, pos, field, h) - weighted_displacement(w_neg, x, neg, field, h)


def _unnormalised(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    n_neg = neg.shape[0] - (1 if field.neg_is_x else 0)  # the masked self-pair is not a negative
    w_pos = _logk(x, pos, field, h).exp() / pos.shape[0]  # (N, M)
    w_neg = _neg_logk(x, neg, field, h).exp() / max(n_neg, 1)  # (N, K)
    return weighted_displacement(w_pos, x, pos, field, h) - weighted_displacement(w_neg, x, neg, field, h)


def _sharp(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    sharp = field.kernel_entry.sharp_kernel()
    lse_pos = torch.logsumexp(_logk(x, pos, field, h, sharp), dim=1, keepdim=True)  # (N, 1): log sum_j k#
    lse_neg = torch.logsumexp(_neg_logk(x, neg, field, h, sharp), dim=1, keepdim=True)  # (N, 1)
    w_pos = torch.exp(_logk(x, pos, field, h) - lse_pos)  # (N, M): k / sum k#
    w_neg = torch.exp(_neg_logk(x, neg, field, h) - lse_neg)  # (N, K)
    return weighted_displacement(w_pos, x, pos, field, h) - weighted_displacement(w_neg, x, neg, field, h)


def _deng_single(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, h: float) -> torch.Tensor:
    m = pos.shape[0]
    logits = torch.cat([_logk(x, pos, field, h), _neg_logk(x, neg, field, h)], dim=1)  # (N, M+K)
    # sqrt(row softmax * column softmax), in log space so masked pairs have a zero gradient
    a = torch.exp(0.5 * (torch.log_softmax(logits, dim=1) + torch.log_softmax(logits, dim=0)))  # (N, M+K)
    a_pos, a_neg = a[:, :m], a[:, m:]
    w_pos = a_pos * a_neg.sum(1, keepdim=True)  # (N, M)
    w_neg = a_neg * a_pos.sum(1, keepdim=True)  # (N, K)
    return weighted_displacement(w_pos, x, pos, field, h) - weighted_displacement(w_neg, x, neg, field, h)


# normalization -> the one-bandwidth field (module docstring)
NORMALISED = {"per_side": _per_side, "joint": _deng_single, "none": _unnormalised, "sharp": _sharp}


@DENSE_OPERATORS.register("meanshift")
def meanshift(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """V = E_p[k(y-x)]/E_p[k] - E_q[k(y-x)]/E_q[k]: softmax over y, the form the theory analyses (or
    the field's `normalization`)."""
    return NORMALISED[field.normalisation_or("per_side")](x, pos, neg, field, field.bandwidth)


@DENSE_OPERATORS.register("deng")
def deng(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """The original drifting paper's batch algorithm: joint row/column softmax, cross-weighting
    (or the field's `normalization`), summed over bandwidth_scales."""
    return sum_over_scales(NORMALISED[field.normalisation_or("joint")], x, pos, neg, field)


def _grad_at(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Gradient of sum(fn(z)) w.r.t. the evaluation point z at z = x, keeping x's own graph.

    A zero offset `delta` is the leaf we differentiate against, so the result still depends
    differentiably on x and on the samples (needed by the no-stop-gradient ablation).
    """
    keep_graph = torch.is_grad_enabled()  # False under the stop-gradient's no_grad
    with torch.enable_grad():
        delta = torch.zeros_like(x, requires_grad=True)
        out = fn(x + delta).sum()
        (g,) = torch.autograd.grad(out, delta, create_graph=keep_graph)
    return g


@DENSE_OPERATORS.register("score")
def score(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """h^2 (grad log p_h - grad log q_h) of the kernel density estimates, by autograd."""

    def log_ratio(z: torch.Tensor) -> torch.Tensor:
        log_p = torch.logsumexp(_logk(z, pos, field), dim=1)  # (N,)
        log_q = torch.logsumexp(_neg_logk(z, neg, field), dim=1)  # (N,)
        return log_p - log_q

    return field.bandwidth**2 * _grad_at(x, log_ratio)


@DENSE_OPERATORS.register("mmd")
def mmd(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """E_p[grad_x k(x,y)] - E_q[grad_x k(x,y)]: the unnormalised kernel (MMD) gradient."""
    n_neg = neg.shape[0] - (1 if field.neg_is_x else 0)

    def witness(z: torch.Tensor) -> torch.Tensor:
        k_pos = _logk(z, pos, field).exp().mean(1)  # (N,)
        k_neg = _neg_logk(z, neg, field).exp().sum(1) / max(n_neg, 1)  # (N,)
        return k_pos - k_neg

    return _grad_at(x, witness)


def sinkhorn_conditional(logk: torch.Tensor, iters: int, tol: float = 0.0) -> torch.Tensor:
    """Conditional plan pi(j | i) of entropic OT with Gibbs kernel exp(logk), uniform weights.

    Log-domain Sinkhorn; potentials in units of eps; at most `iters` iterations, fewer once no
    potential g_j moves by more than `tol` in one (`sinkhorn_converged`).  iters = 0 gives
    softmax_j(logk), i.e. the mean-shift weights.  (N, M) -> (N, M), rows sum to 1.
    """
    n, m = logk.shape
    log_a, log_b = -math.log(n), -math.log(m)
    g = torch.zeros(m, dtype=logk.dtype, device=logk.device)
    for it in range(iters):
        f = -torch.logsumexp(logk + g.unsqueeze(0), dim=1) - log_b  # (N,)
        g_new = -torch.logsumexp(logk + f.unsqueeze(1), dim=0) - log_a  # (M,)
        g, moved = g_new, g_new - g
        if sinkhorn_converged(moved, it, tol):
            break
    return torch.softmax(logk + g.unsqueeze(0), dim=1)


def sinkhorn_converged(moved: torch.Tensor, it: int, tol: float) -> bool:
    """Whether Sinkhorn stops after iteration `it` (0-based): its potentials g moved by `moved`; the first
    iteration never stops (it moves g from 0), nor does tol = 0."""
    return tol > 0 and it > 0 and float(moved.detach().abs().max()) <= tol


@DENSE_OPERATORS.register("sinkhorn")
def sinkhorn(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Sinkhorn-divergence drift T_{q->p}(x) - T_{q->q}(x), eps = h^2, Gibbs kernel = the kernel.

    With the Gaussian kernel the cost is |x-y|^2/2 and eps = h^2 (docs/theory.md#sinkhorn-drift); other
    kernels give cost -h^2 log k.  Debiased: the q->q plan includes self-pairs (no mask).
    """
    pi_pos = sinkhorn_conditional(_logk(x, pos, field), field.sinkhorn_iters, field.sinkhorn_tol)  # (N, M)
    pi_neg = sinkhorn_conditional(_logk(x, neg, field), field.sinkhorn_iters, field.sinkhorn_tol)  # (N, K)
    return weighted_displacement(pi_pos, x, pos, field) - weighted_displacement(pi_neg, x, neg, field)


@DENSE_OPERATORS.register("nystrom")
def nystrom(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Mean-shift with a Nystrom (landmark) low-rank attraction, DriftXpress (arXiv 2605.12183); see nystrom.py."""
    return _nystrom.drift(x, pos, neg, field, exact=meanshift, side=one_side)
