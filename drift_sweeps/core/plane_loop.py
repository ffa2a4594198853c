"""A compiled streaming pass on the plane: one loop per point block, the kernel written out (numba).

`passes.run_pass` on the plane visits (samples x points) blocks with a dozen torch operations per
block (differences, squares, log k, the shift, exp2, the sums): each is a pass over memory, and
together they cost 3-5 times the exp() they exist for.  Here each pair is touched once: its squared
distance, its kernel term and its three sums (s_i = sum_j e_ij, sum_j e_ij (b_j - a_i)) in registers,
with exp2 evaluated by a degree-5 polynomial on the fraction and the exponent written into the float's
bits (vectorised by LLVM; relative error 1.5e-7, one float32 ulp).

The shift is each point's exact max of log k (the kernel at its nearest sample, self pairs left out),
found by a first loop over the squared distances alone, so every sum is >= 1 unless every pair of the
point is masked: `passes.normalised_pass` then redoes that point as it does any other unresolved one.

The same exp2 serves `kept_lse_sums`, the fused log-sum-exp passes of Sinkhorn's kept log-kernel matrix
(stream_sinkhorn._cached_lse): one read of the matrix per pass instead of four torch passes.

Used by `run_pass` for what it covers (`usable`): the plane, float32 on the CPU, a kernel of `CODES`,
no per-pair gradient weight, no column sums, a bias only with a given shift, no explicit block sizes
(tests of the blocks set them), one torch thread (a trial's CPU share is one
thread; with more, torch's own threads win).  Without numba, or elsewhere, the torch path runs; it is
the reference this loop is tested against (tests/core/test_plane_loop.py).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import numpy as np
import torch

from .kernels import KERNELS

# kernel name -> its code in the loop: log k from r = |b - a| at bandwidth h (module docstring)
CODES = {"gaussian": 0, "laplacian": 1, "cauchy": 2, "matern32": 3, "matern52": 4}
_LOG2E = 1.0 / math.log(2.0)
_POINT_BLOCK = 512  # points per block: their accumulators stay in L1
_SAMPLE_CHUNK = 32  # samples summed in float32 before each float64 flush (256: 2.5e-5 error on far points)


@functools.lru_cache(maxsize=1)
def _codes_by_entry() -> dict[int, int]:
    return {id(KERNELS.get(name)): code for name, code in CODES.items() if name in KERNELS.names()}


def kernel_code(kernel: Any) -> Optional[int]:
    """The loop's code of a registered kernel entry (families' other members have none)."""
    return _codes_by_entry().get(id(kernel))


def usable(a: torch.Tensor, b: torch.Tensor, geo: Any) -> bool:
    """Whether the compiled pass covers this call (module docstring); explicit block sizes (FieldSpec.block_x,
    block_y) ask for the torch blocks."""
    return (not geo.periodic and geo.block_x == 0 and geo.block_y == 0 and a.device.type == "cpu"
            and a.dtype == torch.float32 and b.dtype == torch.float32 and 1 <= a.shape[1] <= 8
            and torch.get_num_threads() == 1 and kernel_code(geo.kernel) is not None and _loop() is not None)


def plane_sums(a: torch.Tensor, b: torch.Tensor, kernel: Any, h: float, mask: bool = False,
               a_ids: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
               shift: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, disp, shift), float64: s_i = sum_j exp(log k(|b_j - a_i|) + bias_j - shift_i), disp_i = the same
    sum of e_ij (b_j - a_i).  shift: given (Na,), else max_j log k (0 where every pair is masked; only
    without a bias).  s_i is +inf where the sum reached 2^119 (a given shift far below the max: redo it).
    mask: leave out the pairs j = a_ids[i] (default a_ids = 0..Na-1: b is a itself)."""
    code = kernel_code(kernel)
    loop = _loop()
    if code is None or loop is None:
        raise ValueError("no compiled plane pass for this kernel (or numba is missing)")
    if bias is not None and shift is None:
        raise ValueError("plane_sums: a bias needs a given shift (the nearest sample is not the max of log k + bias)")
    n_a, dim = a.shape
    n_b = b.shape[0]
    hit = torch.full((n_b,), -1, dtype=torch.int64)  # hit[j]: the point whose self pair sample j is
    if mask:
        ids = torch.arange(n_a) if a_ids is None else a_ids.to(torch.int64).cpu()
        inside = (ids >= 0) & (ids < n_b)
        hit[ids[inside]] = torch.arange(n_a)[inside]
    c1, c2 = _constants(code, h, dim)
    s = torch.empty(n_a, dtype=torch.float64)
    disp = torch.empty(n_a, dim, dtype=torch.float64)
    shift2 = (torch.empty(n_a, dtype=torch.float32) if shift is None else
              (shift.detach().to(torch.float64) * _LOG2E).to(torch.float32).contiguous())
    bias2 = (torch.zeros(n_b, dtype=torch.float32) if bias is None else
             (bias.detach().to(torch.float64) * _LOG2E).to(torch.float32).contiguous())
    loop(a.detach().T.contiguous().numpy(), b.detach().contiguous().numpy(), code, c1, c2, dim + 1,
         hit.numpy(), bias2.numpy(), shift is not None, s.numpy(), disp.numpy(), shift2.numpy())
    return s, disp, (shift.detach().to(torch.float64) if shift is not None else
                     shift2.to(torch.float64) * math.log(2.0))


def _constants(code: int, h: float, dim: int) -> tuple[float, float]:
    """(c1, c2) of the loop: log2 k = c1 r^2 (Gaussian), c1 r (Laplacian); k = (1 + c1 r^2)^-(d+1)/2
    (Cauchy); s = c2 r with log k = log(1 + s) - s or log(1 + s + s^2/3) - s (Matern 3/2, 5/2)."""
    if code == 0:
        return -0.5 * _LOG2E / (h * h), 0.0
    if code == 1:
        return -_LOG2E / h, 0.0
    if code == 2:
        return 1.0 / (h * h), 0.0
    return 0.0, (math.sqrt(3.0) if code == 3 else math.sqrt(5.0)) / h


@functools.lru_cache(maxsize=1)
def _loop() -> Optional[Callable[..., None]]:
    """`_plane_loop` compiled by numba (its helpers first; cached on disk next to this file), or None."""
    try:
        import numba
    except ImportError:
        return None
    # fast-math without 'nnan'/'ninf': the loop uses inf as a sentinel (masked pairs, no sample yet)
    jit = functools.partial(numba.njit, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}, error_model="numpy",
                            cache=True)
    module = globals()
    for name in ("_exp2_neg", "_fill_terms", "_log2_ge1"):  # called as globals: compiled first, inlined
        module[name] = jit(inline="always")(module[name])
    module["_log2_kernel"] = jit(module["_log2_kernel"])
    return jit(_plane_loop)


@functools.lru_cache(maxsize=1)
def _lse_loop() -> Optional[Callable[..., None]]:
    """`_shifted_exp2_sums` compiled (see `kept_lse_sums`), or None without numba."""
    if _loop() is None:  # compiles the helpers it shares
        return None
    import numba

    return numba.njit(fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}, error_model="numpy",
                      cache=True)(_shifted_exp2_sums)


@functools.lru_cache(maxsize=1)
def _matrix_loop() -> Optional[Callable[..., None]]:
    """`_log2_matrix` compiled, or None without numba."""
    if _loop() is None:
        return None
    import numba

    return numba.njit(fastmath={"nsz", "arcp", "contract", "afn", "reassoc"}, error_model="numpy",
                      cache=True)(_log2_matrix)


def log2_kernel_matrix(a: torch.Tensor, b: torch.Tensor, geo: Any,
                       out: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """log2 k(|b_j - a_i|) as an (Nb, Na) float32 matrix (Sinkhorn's kept log-kernel, base 2; into `out`
    when given) where `usable`; None elsewhere (the caller's torch blocks)."""
    code = kernel_code(geo.kernel)
    if code is None or not usable(a, b, geo) or _matrix_loop() is None:
        return None
    out = torch.empty(b.shape[0], a.shape[0], dtype=torch.float32) if out is None else out
    c1, c2 = _constants(code, geo.bandwidth, a.shape[1])
    _matrix_loop()(a.detach().T.contiguous().numpy(), b.detach().contiguous().numpy(), code, c1, c2,
                   a.shape[1] + 1, out.numpy())
    return out


def kept_lse_sums(logits2: torch.Tensor, bias2: torch.Tensor, shift2: Optional[torch.Tensor],
                  over_rows: bool) -> Optional[torch.Tensor]:
    """Sinkhorn's sums over a kept (Nb, Na) log-kernel in base-2 units: over_rows s_i = sum_j 2^(L_ji + bias_j
    - shift_i) (Na,), else s_j = sum_i 2^(L_ji + bias_i - shift_j) (Nb,), float64; +inf where an exponent
    passed 120 (the caller's exact redo takes those).  None when the compiled loop does not apply (then the
    caller's torch blocks run): float32 on the CPU, one torch thread, numba installed."""
    if (logits2.device.type != "cpu" or logits2.dtype != torch.float32 or torch.get_num_threads() != 1
            or _lse_loop() is None):
        return None
    n_b, n_a = logits2.shape
    n_out = n_a if over_rows else n_b
    sh = torch.zeros(n_out, dtype=torch.float32) if shift2 is None else shift2.to(torch.float32)
    out = torch.empty(n_out, dtype=torch.float64)
    _lse_loop()(logits2.contiguous().numpy(), bias2.to(torch.float32).contiguous().numpy(), sh.contiguous().numpy(),
                over_rows, out.numpy())
    return out


# ---- the plain-Python forms numba compiles as written (float32 work, float64 sums)


def _exp2_neg(t):
    """2^t in float32 for t <= 127 (t below -126 gives 2^-126): a degree-5 polynomial on the fraction,
    the integer part written into the exponent bits."""
    f32 = np.float32
    t = min(max(t, f32(-126.0)), f32(127.0))
    n = np.floor(t)
    f = t - n
    p = f32(1.8775767e-3)
    p = p * f + f32(8.9893397e-3)
    p = p * f + f32(5.5826318e-2)
    p = p * f + f32(2.4015361e-1)
    p = p * f + f32(6.9315308e-1)
    p = p * f + f32(9.9999994e-1)
    return p * np.int32(np.int32(n + f32(127.0)) << np.int32(23)).view(np.float32)


def _fill_terms(code, sq, e, nx, c1, c2, power, m2, inv, bj):
    """e[i] = exp(log k + bias_j - shift_i) from the squared distances sq[i] (m2 = shift / ln 2, inv = 2^-m2,
    bj = bias_j / ln 2): one loop per kernel, so that each vectorises."""
    f32 = np.float32
    one = f32(1.0)
    if code == 0:
        for i in range(nx):
            e[i] = _exp2_neg(c1 * sq[i] + bj - m2[i])
    elif code == 1:
        for i in range(nx):
            e[i] = _exp2_neg(c1 * np.sqrt(sq[i]) + bj - m2[i])
    elif code == 2:  # (1 + c1 r^2)^(-power/2), power = dim + 1
        pb = f32(2.0) ** bj
        if power == 2:
            for i in range(nx):
                e[i] = pb * inv[i] / (one + c1 * sq[i])
        elif power == 3:
            for i in range(nx):
                q = one + c1 * sq[i]
                e[i] = pb * inv[i] / (q * np.sqrt(q))
        else:
            for i in range(nx):
                e[i] = pb * inv[i] * (one + c1 * sq[i]) ** f32(-0.5 * power)
    elif code == 3:
        for i in range(nx):
            t = c2 * np.sqrt(sq[i])
            e[i] = (one + t) * _exp2_neg(f32(-_LOG2E) * t + bj - m2[i])
    else:
        for i in range(nx):
            t = c2 * np.sqrt(sq[i])
            e[i] = (one + t + t * t * f32(1.0 / 3.0)) * _exp2_neg(f32(-_LOG2E) * t + bj - m2[i])


def _log2_kernel(sq, code, c1, c2, power):
    """log2 k at one squared distance (float64, the shift)."""
    if code == 0:
        return c1 * sq
    if code == 1:
        return c1 * math.sqrt(sq)
    if code == 2:
        return -0.5 * power * math.log2(1.0 + c1 * sq)
    s = c2 * math.sqrt(sq)
    poly = 1.0 + s if code == 3 else 1.0 + s + s * s / 3.0
    return math.log2(poly) - _LOG2E * s


def _plane_loop(a, b, code, c1_, c2_, power, hit, bias2, given, s_out, d_out, sh_out):
    """a (D, Na), b (Nb, D) float32; hit (Nb,) int64: the point whose self pair sample j is, or -1; bias2
    (Nb,) float32 (bias / ln 2); given: sh_out holds the shift / ln 2 (else found here and written there).
    -> s_out (Na,) (+inf from 2^119 up), d_out (Na, D) float64 and sh_out (Na,) float32, in place."""
    dim, n_a = a.shape
    n_b = b.shape[0]
    f32 = np.float32
    c1, c2 = f32(c1_), f32(c2_)
    inf = f32(np.inf)
    sq = np.empty(_POINT_BLOCK, np.float32)
    e = np.empty(_POINT_BLOCK, np.float32)
    m2 = np.empty(_POINT_BLOCK, np.float32)
    inv = np.empty(_POINT_BLOCK, np.float32)
    s32 = np.empty(_POINT_BLOCK, np.float32)
    d32 = np.empty((dim, _POINT_BLOCK), np.float32)
    s64 = np.empty(_POINT_BLOCK, np.float64)
    d64 = np.empty((dim, _POINT_BLOCK), np.float64)
    for i0 in range(0, n_a, _POINT_BLOCK):
        nx = min(_POINT_BLOCK, n_a - i0)
        # 1. each point's nearest sample (its self pair left out): the max of log k, the shift
        for i in range(nx):
            m2[i] = sh_out[i0 + i] if given else inf
        for j in range(0 if given else n_b):
            for i in range(nx):
                sq[i] = 0.0
            for k in range(dim):
                bk = b[j, k]
                ak = a[k, i0:i0 + nx]
                for i in range(nx):
                    dd = bk - ak[i]
                    sq[i] += dd * dd
            hj = hit[j] - i0
            if hj >= 0 and hj < nx:
                sq[hj] = inf
            for i in range(nx):
                m2[i] = min(m2[i], sq[i])
        for i in range(nx):
            if not given:
                m2[i] = _log2_kernel(float(m2[i]), code, c1_, c2_, power) if m2[i] < inf else 0.0
            inv[i] = 2.0 ** (-float(m2[i]))
            s64[i] = 0.0
            for k in range(dim):
                d64[k, i] = 0.0
        # 2. the sums: float32 over chunks of samples, float64 across them
        for j0 in range(0, n_b, _SAMPLE_CHUNK):
            for i in range(nx):
                s32[i] = 0.0
            for k in range(dim):
                for i in range(nx):
                    d32[k, i] = 0.0
            for j in range(j0, min(j0 + _SAMPLE_CHUNK, n_b)):
                for i in range(nx):
                    sq[i] = 0.0
                for k in range(dim):
                    bk = b[j, k]
                    ak = a[k, i0:i0 + nx]
                    for i in range(nx):
                        dd = bk - ak[i]
                        sq[i] += dd * dd
                _fill_terms(code, sq, e, nx, c1, c2, power, m2, inv, bias2[j])
                hj = hit[j] - i0
                if hj >= 0 and hj < nx:  # the self pair
                    e[hj] = 0.0
                for i in range(nx):
                    s32[i] += e[i]
                for k in range(dim):
                    bk = b[j, k]
                    ak = a[k, i0:i0 + nx]
                    dk = d32[k]
                    for i in range(nx):
                        dk[i] += e[i] * (bk - ak[i])
            for i in range(nx):
                s64[i] += s32[i]
            for k in range(dim):
                for i in range(nx):
                    d64[k, i] += d32[k, i]
        for i in range(nx):
            s_out[i0 + i] = s64[i] if s64[i] < 2.0 ** 119 else np.inf
            sh_out[i0 + i] = m2[i]
            for k in range(dim):
                d_out[i0 + i, k] = d64[k, i]


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
        for j in range(n_b):
            row = L[j]
            sj = shift[j]
            total = 0.0
            for i0 in range(0, n_a, _SAMPLE_CHUNK):
                part = np.float32(0.0)
                for i in range(i0, min(i0 + _SAMPLE_CHUNK, n_a)):
                    part += _exp2_neg(row[i] + bias[i] - sj)
                total += part
            out[j] = total if total < big else np.inf


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
