"""Streaming Sinkhorn-divergence drift: log-domain Sinkhorn iterations over streamed (or kept) log-kernels."""

from __future__ import annotations

import math
from typing import Optional

import torch

from .blocks import CPU_BLOCK_ELEMS, Geometry, _MEMORY_FRACTION, free_memory_bytes, geometry
from .field import FieldSpec
from .passes import _LOG2E, _ratio, log_sum, logit_matrix, normalised_pass, unresolved


def _sinkhorn_side(x: torch.Tensor, y: torch.Tensor, geo: Geometry, iters: int) -> torch.Tensor:
    """Barycentric displacement sum_j pi(j|i) (y_j - x_i) of entropic OT, log-domain Sinkhorn.

    Same iteration as dense.sinkhorn_conditional; each iteration is a row pass and a column
    pass, each shifted by the previous iteration's log-normalisers.  When the (M, N) log-kernel
    fits in SINKHORN_CACHE_BYTES it is computed once and kept (no distances, kernels or
    periodic images re-evaluated 2 * iters times); otherwise every pass streams.  The final
    pass, which needs per-image displacements, always streams.  -> (N, D) float64.
    """
    n, m = x.shape[0], y.shape[0]
    log_a, log_b = -math.log(n), -math.log(m)
    g = torch.zeros(m, dtype=torch.float64, device=x.device)  # (M,)
    row_shift: Optional[torch.Tensor] = None
    col_shift: Optional[torch.Tensor] = None
    cached = iters > 0 and n * m * x.element_size() <= sinkhorn_cache_bytes(x.device)
    logits = logit_matrix(x, y, geo).mul_(_LOG2E) if cached else None  # (M, N), base-2 units
    for _ in range(iters):
        if logits is not None:
            row_lse = _cached_lse(logits, g, row_shift, over_samples=True)  # (N,)
        else:
            res, used = normalised_pass(x, y, geo, shift=row_shift, bias=g)
            row_lse = log_sum(res, used)  # (N,)
        f = -row_lse - log_b
        if logits is not None:
            col_lse = _cached_lse(logits, f, col_shift, over_samples=False)  # (M,)
        else:
            res, used = normalised_pass(y, x, geo, shift=col_shift, bias=f)
            col_lse = log_sum(res, used)  # (M,)
        g = -col_lse - log_a
        row_shift, col_shift = row_lse, col_lse
    res, _ = normalised_pass(x, y, geo, shift=row_shift, bias=g, disp=True)
    return _ratio(res.disp, res.s)


SINKHORN_CACHE_BYTES = 64 << 20  # keep Sinkhorn's log-kernel matrix when it is at most this big


def sinkhorn_cache_bytes(device: torch.device) -> int:
    """Largest log-kernel matrix Sinkhorn keeps across iterations on `device`."""
    return min(SINKHORN_CACHE_BYTES, int(_MEMORY_FRACTION * free_memory_bytes(device)))


def _cached_lse(logits: torch.Tensor, bias: torch.Tensor, shift: Optional[torch.Tensor],
                over_samples: bool) -> torch.Tensor:
    """log-sum-exp of L + bias, L = logits / log2(e) (Nb, Na), over samples or over points.

    `logits` are in base-2 units (exp2 is the cheap exponential); bias, shift and the result in
    natural units.  over_samples: bias (Nb,), result (Na,) = LSE_j(L_ji + bias_j); else bias
    (Na,), result (Nb,) = LSE_i(L_ji + bias_i).  `shift` (the previous result) keeps the
    exponentials in range; entries whose shifted sum under/overflows are redone exactly.
    -> float64.
    """
    n_b, n_a = logits.shape
    dt = logits.dtype
    bias_t = (bias * _LOG2E).to(dt)
    sh = None if shift is None else (shift * _LOG2E).to(dt)
    s = torch.zeros(n_a if over_samples else n_b, dtype=torch.float64, device=logits.device)
    rows = max(1, CPU_BLOCK_ELEMS // max(n_a, 1))
    buf = torch.empty(min(rows, n_b) * n_a, dtype=dt, device=logits.device)
    for j0 in range(0, n_b, rows):
        j1 = min(j0 + rows, n_b)
        blk = buf[: (j1 - j0) * n_a].view(j1 - j0, n_a)
        if over_samples:
            torch.add(logits[j0:j1], bias_t[j0:j1].unsqueeze(1), out=blk)  # (ny, Na)
            if sh is not None:
                blk.sub_(sh.unsqueeze(0))
            s += blk.exp2_().sum(0)
        else:
            torch.add(logits[j0:j1], bias_t.unsqueeze(0), out=blk)  # (ny, Na)
            if sh is not None:
                blk.sub_(sh[j0:j1].unsqueeze(1))
            s[j0:j1] = blk.exp2_().sum(1)
    out = torch.log(s) + (0.0 if shift is None else shift.to(torch.float64))
    bad = unresolved(s)
    if bad.numel() > 0:
        if over_samples:
            z2 = logits[:, bad].to(torch.float64) + bias_t.unsqueeze(1).to(torch.float64)  # (Nb, B), base 2
            exact = torch.logsumexp(z2 / _LOG2E, dim=0)  # (B,)
        else:
            z2 = logits[bad].to(torch.float64) + bias_t.unsqueeze(0).to(torch.float64)  # (B, Na), base 2
            exact = torch.logsumexp(z2 / _LOG2E, dim=1)  # (B,)
        out[bad] = exact
    return out


def sinkhorn(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Streaming Sinkhorn-divergence drift T_{q->p}(x) - T_{q->q}(x) (no self-pair mask)."""
    geo = geometry(field, field.bandwidth, x.shape[1])
    v = _sinkhorn_side(x, pos, geo, field.sinkhorn_iters) - _sinkhorn_side(x, neg, geo, field.sinkhorn_iters)
    return v.to(x.dtype)
