"""Streaming Sinkhorn-divergence drift: log-domain Sinkhorn iterations over streamed (or kept) log-kernels."""

from __future__ import annotations

import math
import threading
from typing import Optional

import torch

from . import kept_loops
from .blocks import CPU_BLOCK_ELEMS, Geometry, _MEMORY_FRACTION, free_memory_bytes, geometry
from .dense import sinkhorn_converged
from .field import FieldSpec
from .passes import _LOG2E, _ratio, log_sum, logit_matrix, normalised_pass, unresolved


def _sinkhorn_side(x: torch.Tensor, y: torch.Tensor, geo: Geometry, iters: int, tol: float) -> torch.Tensor:
    """Barycentric displacement sum_j pi(j|i) (y_j - x_i) of entropic OT, log-domain Sinkhorn.

    Same iteration as dense.sinkhorn_conditional; each iteration is a row pass and a column
    pass, each shifted by the previous iteration's log-normalisers.  When the (M, N) log-kernel
    fits in SINKHORN_CACHE_BYTES it is computed once and kept (no distances, kernels or
    periodic images re-evaluated 2 * iters times), and an iteration's column pass and the next one's row pass
    are one read of it where compiled (`kept_loops.kept_sweep`); otherwise every pass streams.  The final
    pass, which needs per-image displacements, always streams.  At most `iters` iterations, fewer once
    the potentials move by at most `tol` (dense.sinkhorn_converged).  -> (N, D) float64.
    """
    n, m = x.shape[0], y.shape[0]
    log_a, log_b = -math.log(n), -math.log(m)
    g = torch.zeros(m, dtype=torch.float64, device=x.device)  # (M,)
    row_shift: Optional[torch.Tensor] = None
    col_shift: Optional[torch.Tensor] = None
    cached = iters > 0 and n * m * x.element_size() <= sinkhorn_cache_bytes(x.device)
    logits = None
    if cached:  # (M, N), base-2 units: compiled where it applies
        buf = _kept_buffer(m, n, x.dtype, x.device)
        logits = kept_loops.log2_kernel_matrix(x, y, geo, out=buf)
        logits = logit_matrix(x, y, geo, out=buf).mul_(_LOG2E) if logits is None else logits
    row_lse = _row_lse(x, y, geo, logits, g, None) if iters > 0 else None
    for it in range(iters):
        f = -row_lse - log_b  # (N,)
        swept = None
        if logits is not None and it + 1 < iters:  # this column pass and the next row pass in one read
            swept = kept_loops.kept_sweep(logits, (f * _LOG2E).to(logits.dtype), col_shift,
                                          log_a, (row_lse * _LOG2E).to(logits.dtype))
        if swept is not None:
            col_lse = swept[0]
        elif logits is not None:
            col_lse = _cached_lse(logits, f, col_shift, over_samples=False)  # (M,)
        else:
            res, used = normalised_pass(y, x, geo, shift=col_shift, bias=f)
            col_lse = log_sum(res, used)  # (M,)
        g_new = -col_lse - log_a
        g, moved = g_new, g_new - g
        row_shift, col_shift = row_lse, col_lse
        if sinkhorn_converged(moved, it, tol):
            break
        if it + 1 < iters:
            row_lse = _row_lse(x, y, geo, logits, g, row_shift, None if swept is None else swept[1])
    res, _ = normalised_pass(x, y, geo, shift=row_shift, bias=g, disp=True)
    return _ratio(res.disp, res.s)


def _row_lse(x: torch.Tensor, y: torch.Tensor, geo: Geometry, logits: Optional[torch.Tensor], g: torch.Tensor,
             shift: Optional[torch.Tensor], sums: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A row pass: LSE_j (log k_ij + g_j) (N,), over the kept matrix (its shifted sums given when a sweep made
    them) or streamed."""
    if logits is not None:
        return _cached_lse(logits, g, shift, over_samples=True, sums=sums)
    res, used = normalised_pass(x, y, geo, shift=shift, bias=g)
    return log_sum(res, used)


SINKHORN_CACHE_BYTES = 64 << 20  # keep Sinkhorn's log-kernel matrix when it is at most this big
_KEPT = threading.local()  # CPU: the kept matrix's memory, reused across calls (a fresh 64 MiB costs 40 ms of
#                            page faults on first touch, as much as computing it)


def _kept_buffer(m: int, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An (m, n) buffer for the kept log-kernel: on the CPU a per-thread one kept between calls."""
    if device.type != "cpu":
        return torch.empty(m, n, dtype=dtype, device=device)
    buf = getattr(_KEPT, "buf", None)
    if buf is None or buf.dtype != dtype or buf.numel() < m * n:
        buf = torch.empty(m * n, dtype=dtype)
        _KEPT.buf = buf
    return buf[: m * n].view(m, n)


def sinkhorn_cache_bytes(device: torch.device) -> int:
    """Largest log-kernel matrix Sinkhorn keeps across iterations on `device`."""
    return min(SINKHORN_CACHE_BYTES, int(_MEMORY_FRACTION * free_memory_bytes(device)))


def _shifted_exp2_sums(logits: torch.Tensor, bias_t: torch.Tensor, sh: Optional[torch.Tensor],
                       over_samples: bool) -> torch.Tensor:
    """sum of 2^(L + bias - shift) over samples or points, in cache-sized torch blocks (base-2 units throughout;
    kept_loops.kept_lse_sums is the compiled form).  -> float64."""
    n_b, n_a = logits.shape
    s = torch.zeros(n_a if over_samples else n_b, dtype=torch.float64, device=logits.device)
    rows = max(1, CPU_BLOCK_ELEMS // max(n_a, 1))
    buf = torch.empty(min(rows, n_b) * n_a, dtype=logits.dtype, device=logits.device)
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
    return s


def _cached_lse(logits: torch.Tensor, bias: torch.Tensor, shift: Optional[torch.Tensor],
                over_samples: bool, sums: Optional[torch.Tensor] = None) -> torch.Tensor:
    """log-sum-exp of L + bias, L = logits / log2(e) (Nb, Na), over samples or over points.

    `logits` are in base-2 units (exp2 is the cheap exponential); bias, shift and the result in
    natural units.  over_samples: bias (Nb,), result (Na,) = LSE_j(L_ji + bias_j); else bias
    (Na,), result (Nb,) = LSE_i(L_ji + bias_i).  `shift` (the previous result) keeps the
    exponentials in range; entries whose shifted sum under/overflows are redone exactly.  `sums`: the shifted
    sums, already made (`kept_loops.kept_sweep`).  -> float64.
    """
    n_b, n_a = logits.shape
    dt = logits.dtype
    bias_t = (bias * _LOG2E).to(dt)
    sh = None if shift is None else (shift * _LOG2E).to(dt)
    s = sums if sums is not None else kept_loops.kept_lse_sums(logits, bias_t, sh, over_samples)  # compiled
    if s is None:
        s = _shifted_exp2_sums(logits, bias_t, sh, over_samples)
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
    iters, tol = field.sinkhorn_iters, field.sinkhorn_tol
    v = _sinkhorn_side(x, pos, geo, iters, tol) - _sinkhorn_side(x, neg, geo, iters, tol)
    return v.to(x.dtype)
