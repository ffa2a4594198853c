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

The same exp2 serves Sinkhorn's kept log-kernel matrix (`kept_loops.py`).

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
               shift: Optional[torch.Tensor] = None,
               weighted: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s, disp, shift), float64: s_i = sum_j exp(log k(|b_j - a_i|) + bias_j - shift_i), disp_i = the same
    sum of e_ij (b_j - a_i), times the gradient weight w = -dlog k(r)/r when `weighted`.  shift: given (Na,),
    else max_j log k (0 where every pair is masked; only without a bias).  s_i is +inf where the sum reached
    2^119 (a given shift far below the max: redo it).  mask: leave out the pairs j = a_ids[i] (default
    a_ids = 0..Na-1: b is a itself)."""
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
         hit.numpy(), bias2.numpy(), shift is not None, weighted, s.numpy(), disp.numpy(), shift2.numpy())
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


FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # fast-math without 'nnan'/'ninf': inf is a sentinel


def compile_in(namespace: dict[str, Any], inline: tuple[str, ...], helpers: tuple[str, ...],
               loops: tuple[str, ...], nogil: bool = False) -> Optional[list[Any]]:
    """Compile a module's plain-Python loops with numba, or None without it: `np` and each function named in
    `inline` and `helpers` in `namespace` (the module's globals, where the loops look them up) are bound to
    numpy and to the function compiled (`inline`: inlined where called, for the scalar functions inner loops
    must vectorise through; `helpers`: called); -> the loops compiled (nogil: releasing the GIL, so Python threads
    can run them at once), cached on disk next to their module."""
    try:
        import numba
        import numpy
    except ImportError:
        return None
    namespace["np"] = numpy  # the plain forms use np: core imports numpy lazily
    jit = functools.partial(numba.njit, fastmath=FASTMATH, error_model="numpy", cache=True)
    for name in inline + helpers:
        py_func = getattr(namespace[name], "py_func", namespace[name])
        py_func.__globals__["np"] = numpy  # a function imported from another module looks np up there
        namespace[name] = jit(inline="always")(py_func) if name in inline else jit(py_func)
    return [jit(nogil=nogil)(namespace[name]) for name in loops]


@functools.lru_cache(maxsize=1)
def _loop() -> Optional[Callable[..., None]]:
    """`_plane_loop` compiled by numba, or None without numba."""
    compiled = compile_in(globals(), ("_exp2_neg", "_squared_distances"),
                          ("_fill_terms", "_fill_weights", "_log2_kernel", "_nearest", "_block_sums"), ("_plane_loop",))
    return None if compiled is None else compiled[0]


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


def _fill_weights(code, sq, e, nx, c1, c2, power):
    """e[i] *= the gradient weight -dlog k(r)/r at sq[i] = r^2 (kernels.py's weight_sq_; the Gaussian's is a
    constant, applied by the caller)."""
    f32 = np.float32
    one = f32(1.0)
    if code == 1:  # 1 / (h r), c1 = -log2(e) / h
        scale = f32(-1.0 / _LOG2E) * c1
        for i in range(nx):
            e[i] *= scale / max(np.sqrt(sq[i]), f32(1e-15))
    elif code == 2:  # (d + 1) / (h^2 + r^2), c1 = 1 / h^2
        for i in range(nx):
            e[i] *= f32(power) * c1 / (one + c1 * sq[i])
    elif code == 3:  # (3 / h^2) / (1 + s), c2 = sqrt(3) / h
        for i in range(nx):
            e[i] *= c2 * c2 / (one + c2 * np.sqrt(sq[i]))
    elif code == 4:  # (5 / 3h^2) (1 + s) / (1 + s + s^2 / 3), c2 = sqrt(5) / h
        for i in range(nx):
            t = c2 * np.sqrt(sq[i])
            e[i] *= c2 * c2 * f32(1.0 / 3.0) * (one + t) / (one + t + t * t * f32(1.0 / 3.0))


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


def _plane_loop(a, b, code, c1_, c2_, power, hit, bias2, given, weighted, s_out, d_out, sh_out):
    """a (D, Na), b (Nb, D) float32; hit (Nb,) int64: the point whose self pair sample j is, or -1; bias2
    (Nb,) float32 (bias / ln 2); given: sh_out holds the shift / ln 2 (else found here and written there);
    weighted: the displacement sums carry the gradient weight.
    -> s_out (Na,) (+inf from 2^119 up), d_out (Na, D) float64 and sh_out (Na,) float32, in place."""
    dim, n_a = a.shape
    f32 = np.float32
    c1, c2 = f32(c1_), f32(c2_)
    sq = np.empty(_POINT_BLOCK, np.float32)
    m2 = np.empty(_POINT_BLOCK, np.float32)
    inv = np.empty(_POINT_BLOCK, np.float32)
    s64 = np.empty(_POINT_BLOCK, np.float64)
    d64 = np.empty((dim, _POINT_BLOCK), np.float64)
    for i0 in range(0, n_a, _POINT_BLOCK):
        nx = min(_POINT_BLOCK, n_a - i0)
        if given:
            for i in range(nx):
                m2[i] = sh_out[i0 + i]
        else:  # each point's nearest sample (its self pair left out): the max of log k, the shift
            _nearest(a, b, hit, i0, nx, sq, m2)
            for i in range(nx):
                m2[i] = _log2_kernel(float(m2[i]), code, c1_, c2_, power) if m2[i] < np.inf else 0.0
        for i in range(nx):
            inv[i] = 2.0 ** (-float(m2[i]))
        _block_sums(a, b, hit, bias2, i0, nx, code, c1, c2, power, m2, inv, weighted, sq, s64, d64)
        for i in range(nx):
            s_out[i0 + i] = s64[i] if s64[i] < 2.0 ** 119 else np.inf
            sh_out[i0 + i] = m2[i]
            for k in range(dim):
                d_out[i0 + i, k] = d64[k, i]


def _squared_distances(a, b, j, i0, nx, sq):
    """sq[i] = |b_j - a_i|^2 for the points a[:, i0:i0+nx]."""
    for i in range(nx):
        sq[i] = 0.0
    for k in range(a.shape[0]):
        bk = b[j, k]
        ak = a[k, i0:i0 + nx]
        for i in range(nx):
            dd = bk - ak[i]
            sq[i] += dd * dd


def _nearest(a, b, hit, i0, nx, sq, m2):
    """m2[i] = min_j |b_j - a_i|^2 over the samples, the self pair (hit) left out; +inf when none is left."""
    for i in range(nx):
        m2[i] = np.inf
    for j in range(b.shape[0]):
        _squared_distances(a, b, j, i0, nx, sq)
        hj = hit[j] - i0
        if hj >= 0 and hj < nx:
            sq[hj] = np.inf
        for i in range(nx):
            m2[i] = min(m2[i], sq[i])


def _block_sums(a, b, hit, bias2, i0, nx, code, c1, c2, power, m2, inv, weighted, sq, s64, d64):
    """The sums of points a[:, i0:i0+nx] over every sample: float32 over chunks of samples, float64 across."""
    dim = a.shape[0]
    n_b = b.shape[0]
    e = np.empty(nx, np.float32)
    s32 = np.empty(nx, np.float32)
    d32 = np.empty((dim, nx), np.float32)
    for i in range(nx):
        s64[i] = 0.0
        for k in range(dim):
            d64[k, i] = 0.0
    for j0 in range(0, n_b, _SAMPLE_CHUNK):
        s32[:] = 0.0
        d32[:, :] = 0.0
        for j in range(j0, min(j0 + _SAMPLE_CHUNK, n_b)):
            _squared_distances(a, b, j, i0, nx, sq)
            _fill_terms(code, sq, e, nx, c1, c2, power, m2, inv, bias2[j])
            hj = hit[j] - i0
            if hj >= 0 and hj < nx:  # the self pair
                e[hj] = 0.0
            for i in range(nx):
                s32[i] += e[i]
            if weighted:
                _fill_weights(code, sq, e, nx, c1, c2, power)
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
