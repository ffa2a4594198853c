"""The Nystrom (landmark) drift of DriftXpress (arXiv 2605.12183): mean-shift with a low-rank attraction.

The attraction E_p[k(x,y) (y - x)] / E_p[k(x,y)] needs the (N, M) kernel matrix K(x, Y).  With
m landmarks L (a subset of the data) the Nystrom factorisation

    K(x, Y) ~ K(x, L) K(L, L)^-1 K(L, Y)

turns both sums into  K(x, L) C,  C = K(L, L)^-1 K(L, Y) [Y, 1]  (m, D+1): O((N + M) m + m^3) work
instead of O(N M).  The landmarks are every (M/m)-th data sample (the data are a fresh draw each
step, so a strided subset is a sample of p); the m x m system is solved in float64 by Cholesky with a
jitter of 100 ulp of the inputs' dtype (1e-5 for float32, whose kernel values carry that much
round-off; 2e-14 for float64), raised tenfold until the factorisation succeeds: the usual
regularisation of a numerically rank-deficient kernel matrix.  Each row of K(x, L) is divided by its largest entry,
which cancels in the ratio and keeps far points from underflowing.

By default only the attraction is approximated (DriftXpress reports that this suffices); the
repulsion is the exact per-side one (`FieldSpec.nystrom_repulsion` approximates it as well, with
landmarks among the negatives; the low-rank sums keep the self-pairs, whose low-rank weights k~_ii would
cost O(N m^2) to remove (more than the exact field at m ~ 1000), a bias of k~_ii / sum_j k~_ij, O(1/N) of
the repulsion; taking out their exact weight k(0) instead is worse, since k~_ii << k(0) for smooth kernels).  Points whose
approximate normaliser is not positive (far from every landmark) get their exact attraction.
landmarks = 0, or m >= the samples of a side, is that side's exact field (with every sample as a
landmark the factorisation reproduces K exactly in exact arithmetic; the exact sum is cheaper and
exact in floating point too).  The displacement y - x is linear in y only on the plane, so on the
torus only the exact field (landmarks = 0) is available.  The normalisation is the per-side one.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .field import FieldSpec, Operator

_JITTER_ULPS = 100.0  # first jitter, in units of the inputs' machine epsilon (K(L, L) has k(0) = 1 on its diagonal)


Side = Callable[[torch.Tensor, torch.Tensor, FieldSpec, bool], torch.Tensor]


def drift(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec, *, exact: Operator,
          side: Side) -> torch.Tensor:
    """V = attraction - repulsion with `field.landmarks` landmarks; `exact` (mean-shift) and `side`
    (one exact per-side term E_y[k (y-x)]/E_y[k], `mask` leaving out self-pairs) come from the dense
    or the streaming module.  -> (N, D)."""
    m = field.landmarks
    if field.normalization != "auto":
        field = dataclasses.replace(field, normalization="auto")  # nystrom's one normalisation: per side
    approx_pos = 0 < m < pos.shape[0]
    approx_neg = field.nystrom_repulsion and 0 < m < neg.shape[0] - (1 if field.neg_is_x else 0)
    if not (approx_pos or approx_neg):
        return exact(x, pos, neg, field)
    if field.periodic:
        raise ValueError("nystrom: landmarks > 0 needs the plane (on the torus y - x is not linear in y); "
                         "use landmarks = 0")
    v_pos = attraction(x, pos, field, m) if approx_pos else side(x, pos, field, False)
    v_neg = attraction(x, neg, field, m, field.neg_is_x) if approx_neg else side(x, neg, field, field.neg_is_x)
    return v_pos - v_neg


def landmark_indices(n: int, m: int, device: torch.device) -> torch.Tensor:
    """Every (n/m)-th index: m distinct indices of 0..n-1 (m <= n).  -> (m,)."""
    return torch.arange(m, device=device) * n // m


def _kernel_matrix(a: torch.Tensor, b: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """log k(|a_i - b_j|) on the plane.  -> (Na, Nb)."""
    return field.kernel_entry(torch.cdist(a, b), field.bandwidth, a.shape[1])


def _cholesky(k_ll: torch.Tensor, jitter: float) -> torch.Tensor:
    """Cholesky factor of K + jitter I, the jitter raised tenfold until the factorisation succeeds."""
    eye = torch.eye(k_ll.shape[0], dtype=k_ll.dtype, device=k_ll.device)
    while True:
        chol, info = torch.linalg.cholesky_ex(k_ll + jitter * eye)
        if int(info) == 0 or jitter >= 1.0:
            return chol
        jitter *= 10.0


def attraction(x: torch.Tensor, y: torch.Tensor, field: FieldSpec, m: int, mask: bool = False) -> torch.Tensor:
    """E_y[k (y - x)] / E_y[k] with the Nystrom kernel on m landmarks of y (mask: y is x; the low-rank sums
    keep the self-pairs, the exact fallback leaves them out).  -> (N, D) in x's dtype."""
    f64 = torch.float64
    lm = y[landmark_indices(y.shape[0], m, y.device)]  # (m, D)
    log_xl = _kernel_matrix(x, lm, field)  # (N, m)
    row_max = log_xl.amax(1, keepdim=True).to(f64)  # (N, 1)
    k_xl = torch.exp(log_xl.to(f64) - row_max)  # (N, m), row max 1: cancels in the ratio
    k_ll = torch.exp(_kernel_matrix(lm, lm, field)).to(f64)  # (m, m)
    k_ly = torch.exp(_kernel_matrix(lm, y, field)).to(f64)  # (m, M)
    y1 = torch.cat([y.to(f64), torch.ones_like(y[:, :1], dtype=f64)], dim=1)  # (M, D+1)
    chol = _cholesky(k_ll, _JITTER_ULPS * torch.finfo(x.dtype).eps)
    sums = k_xl @ torch.cholesky_solve(k_ly @ y1, chol)  # (N, D+1): sum_j k~_ij [y_j, 1]
    num, den = sums[:, :-1], sums[:, -1:]
    out = num / den - x.to(f64)  # (N, D)
    bad = torch.nonzero(~(den[:, 0] > 0) | ~torch.isfinite(out).all(1)).squeeze(1)
    if bad.numel() > 0:
        out = out.clone()
        out[bad] = exact_side(x[bad], y, field, bad if mask else None).to(f64)
    return out.to(x.dtype)


def exact_side(x: torch.Tensor, y: torch.Tensor, field: FieldSpec, self_ids=None) -> torch.Tensor:
    """The exact per-side attraction of a few points on the plane (self_ids: y[self_ids[i]] is x[i]).  -> (n, D)."""
    logits = _kernel_matrix(x, y, field)  # (n, M)
    if self_ids is not None:
        logits = logits.index_put((torch.arange(x.shape[0], device=x.device), self_ids),
                                  torch.tensor(-torch.inf, dtype=logits.dtype, device=logits.device))
    return torch.softmax(logits, dim=1) @ y - x
