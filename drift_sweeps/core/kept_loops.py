"""Sinkhorn's kept log-kernel matrix, compiled (numba): the matrix itself and the fused log-sum-exp passes over it.

`stream_sinkhorn` keeps the (M, N) matrix of log2 k when it fits (64 MiB) and runs each iteration as two
log-sum-exp passes over it.  In torch each pass is four passes over the matrix (add the bias, subtract the
shift, exp2, sum); here one read per pass with exp2 by the plane loop's polynomial (`plane_loop._exp2_neg`),
and the matrix in one loop per row (log2 of the Cauchy and Matern kernels by a polynomial on the mantissa).
`kept_sweep` makes an iteration's column pass and the next iteration's row pass in one read (a row's column
sum gives its potential, which is all the row pass needs of that row): 12.8 ms against 16.5 for the two apart
at 4096 x 4096.
Same conditions as the plane loop (`plane_loop.usable`); the torch code stays the reference
(tests/core/test_plane_loop.py).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import torch

from .passes import _SMALL
from .plane_loop import _LOG2E, _SAMPLE_CHUNK, _constants, _exp2_neg, compile_in, kernel_code, usable  # noqa: F401


@functools.lru_cache(maxsize=1)
def _compiled() -> Optional[list[Callable[..., None]]]:
    """[`_shifted_exp2_sums`, `_log2_matrix`, `_sweep`] compiled, or None without numba."""
    return compile_in(globals(), ("_exp2_neg", "_log2_ge1", "_row_sum"), (),
                      ("_shifted_exp2_sums", "_log2_matrix", "_sweep"))


def _applies(logits2: torch.Tensor) -> bool:
    """The compiled passes run on float32 on the CPU, one torch thread, numba installed."""
    return (logits2.device.type == "cpu" and logits2.dtype == torch.float32 and torch.get_num_threads() == 1
            and _compiled() is not None)


def kept_lse_sums(logits2: torch.Tensor, bias2: torch.Tensor, shift2: Optional[torch.Tensor],
                  over_rows: bool) -> Optional[torch.Tensor]:
    """Sinkhorn's sums over a kept (Nb, Na) log-kernel in base-2 units: over_rows s_i = sum_j 2^(L_ji + bias_j
    - shift_i) (Na,), else s_j = sum_i 2^(L_ji + bias_i - shift_j) (Nb,), float64; +inf where an exponent
    passed 120 (the caller's exact redo takes those).  None when the compiled loop does not apply (then the
    caller's torch blocks run: `_applies`)."""
    if not _applies(logits2):
        return None
    n_b, n_a = logits2.shape
    n_out = n_a if over_rows else n_b
    n_bias = n_b if over_rows else n_a  # the loop does not check its reads
    if bias2.shape != (n_bias,) or (shift2 is not None and shift2.shape != (n_out,)):
        raise ValueError(f"kept_lse_sums: bias {tuple(bias2.shape)} / shift "
                         f"{None if shift2 is None else tuple(shift2.shape)} do not fit logits {(n_b, n_a)}")
    sh = torch.zeros(n_out, dtype=torch.float32) if shift2 is None else shift2.to(torch.float32)
    out = torch.empty(n_out, dtype=torch.float64)
    _compiled()[0](logits2.contiguous().numpy(), bias2.to(torch.float32).contiguous().numpy(), sh.contiguous().numpy(),
                over_rows, out.numpy())
    return out


def kept_sweep(logits2: torch.Tensor, bias2: torch.Tensor, shift: Optional[torch.Tensor], log_a: float,
               shift_rows2: torch.Tensor) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """A Sinkhorn iteration's column pass and the next iteration's row sums in one read of the kept (Nb, Na)
    log-kernel (base 2; `_sweep`): -> (the column log-sum-exps (Nb,), natural units, exact where the shifted
    sum under- or overflowed; the next row pass's sums (Na,) as `kept_lse_sums(..., over_rows=True)` gives them,
    its bias -col - log_a).  bias2 (Na,) and shift_rows2 (Na,) in base 2, shift (Nb,) natural (None: 0); None
    where the compiled loop does not apply."""
    if not _applies(logits2):
        return None
    n_b, n_a = logits2.shape
    shift = torch.zeros(n_b, dtype=torch.float64) if shift is None else shift
    if bias2.shape != (n_a,) or shift.shape != (n_b,) or shift_rows2.shape != (n_a,):
        raise ValueError(f"kept_sweep: bias {tuple(bias2.shape)} / shifts {tuple(shift.shape)}, "
                         f"{tuple(shift_rows2.shape)} do not fit logits {(n_b, n_a)}")
    shift64 = shift.to(torch.float64).contiguous()
    col, rows = torch.empty(n_b, dtype=torch.float64), torch.empty(n_a, dtype=torch.float64)
    _compiled()[2](logits2.contiguous().numpy(), bias2.to(torch.float32).contiguous().numpy(),
                   (shift64 * _LOG2E).to(torch.float32).numpy(), shift64.numpy(), _SMALL, float(log_a),
                   shift_rows2.to(torch.float32).contiguous().numpy(), col.numpy(), rows.numpy())
    return col, rows


def log2_kernel_matrix(a: torch.Tensor, b: torch.Tensor, geo: Any,
                       out: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """log2 k(|b_j - a_i|) as an (Nb, Na) float32 matrix (Sinkhorn's kept log-kernel, base 2; into `out`
    when given) where `usable`; None elsewhere (the caller's torch blocks)."""
    code = kernel_code(geo.kernel)
    if code is None or not usable(a, b, geo) or _compiled() is None:
        return None
    out = torch.empty(b.shape[0], a.shape[0], dtype=torch.float32) if out is None else out
    c1, c2 = _constants(code, geo.bandwidth, a.shape[1])
    _compiled()[1](a.detach().T.contiguous().numpy(), b.detach().contiguous().numpy(), code, c1, c2,
                   a.shape[1] + 1, out.numpy())
    return out


# ---- the plain-Python forms numba compiles as written


def _shifted_exp2_sums(L, bias, shift, over_rows, out):
    """L (Nb, Na) float32: over_rows out[i] = sum_j 2^(L[j, i] + bias[j] - shift[i]), else out[j] =
    sum_i 2^(L[j, i] + bias[i] - shift[j]); float64 sums, +inf where a sum reached 2^119 (an exponent may
    have been clamped at 127: the caller redoes those exactly)."""
    n_b, n_a = L.shape
    big = 2.0 ** 119
    if over_rows:
        acc = np.zeros(n_a, np.float64)
        part = np.empty(n_a, np.float32)
        for j0 in range(0, n_b, _SAMPLE_CHUNK):
            for i in range(n_a):
                part[i] = 0.0
            for j in range(j0, min(j0 + _SAMPLE_CHUNK, n_b)):
                row = L[j]
                bj = bias[j]
                for i in range(n_a):
                    part[i] += _exp2_neg(row[i] + bj - shift[i])
            for i in range(n_a):
                acc[i] += part[i]
        for i in range(n_a):
            out[i] = acc[i] if acc[i] < big else np.inf
    else:
        term = np.empty(n_a, np.float32)
        for j in range(n_b):
            total = _row_sum(L[j], bias, shift[j], term)
            out[j] = total if total < big else np.inf


def _row_sum(row, bias, sj, term):
    """sum_i 2^(row[i] + bias[i] - sj) in float64: the terms into the buffer `term`, then their sum, two loops LLVM
    vectorises (a float32 sum per chunk of _SAMPLE_CHUNK terms inside the first took 4x as long)."""
    for i in range(row.shape[0]):
        term[i] = _exp2_neg(row[i] + bias[i] - sj)
    total = 0.0
    for i in range(row.shape[0]):
        total += term[i]
    return total


def _sweep(L, bias, shift, shift64, small, log_a, shift_rows, col_out, row_out):
    """One read of L (Nb, Na) float32 for a Sinkhorn iteration's column pass and the next one's row pass.  For each
    row j: col_out[j] = ln sum_i 2^(L[j, i] + bias[i]) through the shift (shift[j] in base 2, shift64[j] in
    natural units: exactly where the shifted sum leaves [small, 2^119)); then the row pass's terms 2^(L[j, i] +
    b_j - shift_rows[i]) with b_j = log2(e) (-col_out[j] - log_a) in float32, summed as `_shifted_exp2_sums`
    sums them over rows (+inf where a sum reached 2^119)."""
    n_b, n_a = L.shape
    big = 2.0 ** 119
    log2e, ln2 = 1.4426950408889634, 0.6931471805599453
    term = np.empty(n_a, np.float32)
    part = np.zeros(n_a, np.float32)
    acc = np.zeros(n_a, np.float64)
    for j in range(n_b):
        row = L[j]
        total = _row_sum(row, bias, shift[j], term)
        if small <= total < big:
            lse = np.log(total) + shift64[j]
        else:  # under- or overflow: the float64 log-sum-exp of the row
            top = -np.inf
            for i in range(n_a):
                top = max(top, np.float64(row[i]) + np.float64(bias[i]))
            total = 0.0
            for i in range(n_a):
                total += np.exp2(np.float64(row[i]) + np.float64(bias[i]) - top)
            lse = (top + np.log2(total)) * ln2
        col_out[j] = lse
        bj = np.float32((-lse - log_a) * log2e)
        for i in range(n_a):
            part[i] += _exp2_neg(row[i] + bj - shift_rows[i])
        if (j + 1) % _SAMPLE_CHUNK == 0 or j == n_b - 1:
            for i in range(n_a):
                acc[i] += part[i]
                part[i] = 0.0
    for i in range(n_a):
        row_out[i] = acc[i] if acc[i] < big else np.inf


def _log2_ge1(q):
    """log2 q for float32 q >= 1: the exponent from the bits, log2 of the mantissa (in [sqrt 1/2, sqrt 2)) by a
    degree-9 polynomial (error 1.3e-8 in exact arithmetic)."""
    f32 = np.float32
    bits = np.float32(q).view(np.int32)
    ex = f32((bits >> np.int32(23)) - np.int32(127))
    m = np.int32((bits & np.int32(0x007FFFFF)) | np.int32(0x3F800000)).view(np.float32)  # [1, 2)
    big = m > f32(1.4142135)
    m = m * f32(0.5) if big else m
    ex = ex + f32(1.0) if big else ex
    x = m - f32(1.0)
    p = f32(0.12614846)
    p = p * x + f32(-0.20742103)
    p = p * x + f32(0.21566986)
    p = p * x + f32(-0.23892035)
    p = p * x + f32(0.28791833)
    p = p * x + f32(-0.36070484)
    p = p * x + f32(0.4809106)
    p = p * x + f32(-0.72134733)
    p = p * x + f32(1.442695)
    return ex + p * x


def _log2_matrix(a, b, code, c1_, c2_, power, out):
    """out[j, i] = log2 k(|b_j - a_i|) for the kernel `code` (`_constants`); a (D, Na), b (Nb, D)."""
    dim, n_a = a.shape
    f32 = np.float32
    c1, c2 = f32(c1_), f32(c2_)
    half_power = f32(-0.5 * power)
    log2e = f32(_LOG2E)
    for j in range(b.shape[0]):
        row = out[j]
        for i in range(n_a):
            row[i] = 0.0
        for k in range(dim):
            bk = b[j, k]
            ak = a[k]
            for i in range(n_a):
                dd = bk - ak[i]
                row[i] += dd * dd
        if code == 0:
            for i in range(n_a):
                row[i] = c1 * row[i]
        elif code == 1:
            for i in range(n_a):
                row[i] = c1 * np.sqrt(row[i])
        elif code == 2:
            for i in range(n_a):
                row[i] = half_power * _log2_ge1(f32(1.0) + c1 * row[i])
        elif code == 3:
            for i in range(n_a):
                s = c2 * np.sqrt(row[i])
                row[i] = _log2_ge1(f32(1.0) + s) - log2e * s
        else:
            for i in range(n_a):
                s = c2 * np.sqrt(row[i])
                row[i] = _log2_ge1(f32(1.0) + s + s * s * f32(1.0 / 3.0)) - log2e * s
