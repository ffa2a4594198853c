"""Spectral drift operators on the torus: the periodic kernel through its Fourier series.

On the torus [0, 2pi)^D every convolution-form operator (meanshift, score, mmd) is built from
two sums per sample set,

    S(x)  = sum_j k_per(x - y_j)           G(x) = sum_j Phi_per(x - y_j)  (a vector field)

with k_per the periodised kernel, Phi = -k(u) u (mean-shift: the kernel-weighted displacement
y - x, summed over images) or grad k (score, mmd).  Their Fourier coefficients are closed
forms of the kernel's normalised transform kappa (`theory.SPECTRA`, same name) and its mass
Z = int k (`Kernel.mass`):

    k_per:    Z kappa(|k| h) / (2 pi)^D
    grad k:   i k  Z kappa(|k| h) / (2 pi)^D
    k(u) u:   i (k / |k|) Z h kappa'(|k| h) / (2 pi)^D

so S and G are one type-1 NUFFT (samples -> modes) and one batched type-2 NUFFT (modes ->
points): O((N + M) w^D + K^D log K) instead of O(N M I).  The periodic sum is exact up to the
Fourier truncation, chosen from a tail bound (`TRUNCATION_TOL`), and FINUFFT's precision.

Kernels whose coefficients decay slowly (the Laplacian's cusp: kappa ~ s^-(D+1), and the
gradient field's coefficients do not decay at all in 1-D) are Ewald-split:

    k = k chi + k (1 - chi),    chi(r) = exp(-(r / a)^8)

The near part k chi is negligible beyond r_c = 1.7 a (chi = 4e-31 there) and is summed in real
space over neighbour cells; the far part k (1 - chi) vanishes to 8th order at r = 0, so it is
smooth and its coefficients (Z kappa minus the near part's transform, a radial quadrature) decay
fast.  `plan_for` picks direct, Ewald or "stream" (the block-streaming code) from a cost model
calibrated by the benchmark (docs/benchmarks.md).

The sums are absolute, not log-domain: a point whose normaliser S is below what the NUFFT
resolves (far from every sample compared with h) is redone by the streaming code, so results
stay exact where the streaming code's max-shifted softmax is.  CPU only (FINUFFT); other
devices stream.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..spine import theory
from .field import FieldSpec
from .geometry import TWO_PI
from .kernels import KERNELS

TRUNCATION_TOL = 1e-10  # Fourier tail bound, in units of kappa(0) = 1, summed over the lattice
NUFFT_EPS = {torch.float64: 1e-12, torch.float32: 1e-8}  # FINUFFT precision per input dtype
CHI_POWER = 8  # chi(r) = exp(-(r/a)^CHI_POWER)
CUTOFF = 1.7  # near field summed for r < CUTOFF * a (chi = 4e-31 there)
FAR_MODES = 100.0  # Ewald: the far part needs about FAR_MODES / a modes per dimension (measured, chi power 8)
NEAR_CANDIDATES = {1: 1.5, 2: 9 / math.pi}  # cell-list candidates per pair within r_c (3^D cells of side r_c)
NEAR_TABLE_STEP = 0.01  # near-part transform tabulated every NEAR_TABLE_STEP / r_c in s, then interpolated
MAX_MODES_2D = 1024  # 2-D Fourier grids beyond this many modes per dimension cost too much memory
ROUNDOFF = 1e-12  # coefficients (in units of the mass Z) below this are quadrature and float64 noise
EWALD_MIN_MODES = 8.0  # the far part needs at least ~8/a modes: direct below that is never beaten
MAX_MODES_PER_DIM = 8192  # direct/Ewald Fourier grids beyond this are not attempted
FALLBACK = 1e6  # normalisers below FALLBACK x their NUFFT error estimate are redone by streaming
# cost model (seconds per unit, one thread), fitted to `python -m benchmarks.field --torus
# --threads 1` at N = M = 4096 (docs/benchmarks.md): only the ratios matter, they decide
# direct / Ewald / stream
COST_PAIR = 3.5e-9  # streaming: one kernel value (pair x image)
COST_POINT = 1.5e-8  # NUFFT: spreading/interpolating one point for one transform in 1-D; x 3^(D-1)
COST_MODE = 2e-8  # NUFFT: one fine-grid mode per transform, with the coefficient products around it
COST_CALL = 2e-3  # NUFFT: fixed cost of one spectral evaluation (plans, conversions)
COST_NEAR = 1.2e-7  # Ewald: one cell-list candidate pair (gathers, exp, index_add in torch)
# planning a new bandwidth (truncation search, coefficients) is not free: 2-170 ms per bandwidth measured
# (1-2-D, the three kernels, N = 512-4096), while a call at N = 512 costs 2-20 ms.  An annealed schedule
# asks for a new bandwidth at every step, so a plan is built only once what streaming has cost beyond the
# spectral call's fixed cost, at this bandwidth, reaches the build cost (ski rental: never more than twice
# the better choice).  A fixed bandwidth, or a large N, builds it at once or after a few calls.
PLAN_BUILD_S = 0.05
_SEEN: dict[tuple[str, float, int], int] = {}  # (kernel, bandwidth, dim) -> calls so far (bounded below)


@dataclass(frozen=True)
class Plan:
    """How one (kernel, h, dim, sizes) field is evaluated: 'direct', 'ewald' or 'stream'."""

    method: str
    modes: int = 0  # Fourier modes per dimension: -modes..modes
    a: float = 0.0  # Ewald split radius (chi's scale)
    cost_s: float = 0.0  # the cost model's estimate of one evaluation
    stream_cost_s: float = 0.0


def supported(kernel: str, dim: int) -> bool:
    """Whether the kernel has what the spectral path needs: a closed-form transform and mass."""
    return kernel in theory.SPECTRA and KERNELS.get(kernel).mass is not None and 1 <= dim <= 3


def mass(kernel: str, h: float, dim: int) -> float:
    """int_{R^D} k(|x|) dx at bandwidth h."""
    return KERNELS.get(kernel).mass(dim) * h**dim


def kappa_prime(kernel: str, s: torch.Tensor, dim: int) -> torch.Tensor:
    """d kappa / d s = -decay(s) / s, from theory's closed form of the mode decay -s kappa'(s)
    (at s = 0 its limit, taken at s = 1e-300).  -> like s (float64)."""
    s = s.to(torch.float64).clamp_min(1e-300)
    return -theory.SPECTRA[kernel].decay(s, dim) / s


def _kappa(kernel: str, s: torch.Tensor, dim: int) -> torch.Tensor:
    return theory.SPECTRA[kernel].kappa(s.to(torch.float64), dim)


# ------------------------------------------------------------------ radial transforms


def _shell_sizes(m: torch.Tensor, dim: int) -> torch.Tensor:
    """Lattice points with max-norm exactly m."""
    return (2 * m + 1) ** dim - (2 * m - 1).clamp_min(0) ** dim


def _near_radial(kernel: str, h: float, dim: int, a: float, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform of the near part k chi at radial frequency s, and its s-derivative.  -> 2 x like s.

    Many frequencies (a 2-D grid's distinct |k|): the quadrature runs on a uniform table of spacing
    NEAR_TABLE_STEP / r_c and is interpolated (4-point Lagrange).  The near part lives on r < r_c, so
    its transform varies on the scale 1 / r_c and the interpolation error is ~(step)^4 / 128 of its
    size: 4e-11 (measured 1e-12 of Z against the direct quadrature, tests/test_spectral.py)."""
    r_c = CUTOFF * a
    flat = s.reshape(-1)
    step = NEAR_TABLE_STEP / r_c
    top = float(flat.max()) if flat.numel() else 0.0
    if flat.numel() > 4 * (top / step + 4):
        nodes = torch.arange(-1, int(top / step) + 3, dtype=torch.float64) * step  # s = -step .. top + 2 step
        tv, td = _near_radial_direct(kernel, h, dim, a, nodes.abs())
        td = td * torch.sign(nodes)  # the transform is even in s: its derivative is odd
        return _lagrange4(tv, flat, step).view(s.shape), _lagrange4(td, flat, step).view(s.shape)
    return _near_radial_direct(kernel, h, dim, a, s)


def _lagrange4(table: torch.Tensor, s: torch.Tensor, step: float) -> torch.Tensor:
    """Cubic interpolation of a table on s = (i - 1) step, i = 0.., at s >= 0."""
    u = s / step + 1.0
    i = u.floor().long().clamp(1, table.numel() - 3)
    f = u - i
    p0, p1, p2, p3 = table[i - 1], table[i], table[i + 1], table[i + 2]
    return (-f * (f - 1) * (f - 2) / 6 * p0 + (f + 1) * (f - 1) * (f - 2) / 2 * p1
            - (f + 1) * f * (f - 2) / 2 * p2 + (f + 1) * f * (f - 1) / 6 * p3)


def _near_radial_direct(kernel: str, h: float, dim: int, a: float, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """_near_radial by Gauss-Legendre quadrature at every s."""
    r_c = CUTOFF * a
    n_q = int(min(6000, 1.2 * float(s.max()) * r_c + 120))  # Gauss-Legendre: ~pi nodes per oscillation
    n_q = -(-n_q // 256) * 256  # in steps of 256, so the cached rules are reused as h changes
    nodes, weights = _gauss_legendre(n_q)
    r = 0.5 * r_c * (nodes + 1.0)  # (Q,)
    w = 0.5 * r_c * weights
    g = torch.exp(KERNELS.get(kernel).log(r, h, dim) - (r / a) ** CHI_POWER) * w  # (Q,)
    sr = s.reshape(-1, 1) * r  # (S, Q)
    if dim == 1:
        val = 2.0 * (torch.cos(sr) * g).sum(1)
        der = -2.0 * (torch.sin(sr) * (g * r)).sum(1)
    elif dim == 2:
        from scipy import special  # torch's bessel_j0/j1 are off by up to 5e-7 at large arguments

        j0 = torch.from_numpy(special.j0(sr.numpy()))
        j1 = torch.from_numpy(special.j1(sr.numpy()))
        val = TWO_PI * (j0 * (g * r)).sum(1)
        der = -TWO_PI * (j1 * (g * r * r)).sum(1)
    else:
        raise ValueError("Ewald split: dim 1 or 2")
    return val.view(s.shape), der.view(s.shape)


@functools.lru_cache(maxsize=8)
def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy(x), torch.from_numpy(w)


def _radial(kernel: str, h: float, dim: int, a: float, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform of the (far part of the) kernel at |k| = s and its s-derivative, in units of Z."""
    z = mass(kernel, h, dim)
    val = _kappa(kernel, s * h, dim)
    der = h * kappa_prime(kernel, s * h, dim)
    if a > 0.0:
        nv, nd = _near_radial(kernel, h, dim, a, s)
        val, der = val - nv / z, der - nd / z
    return val, der


@functools.lru_cache(maxsize=256)
def truncation(kernel: str, h: float, dim: int, a: float = 0.0, max_modes: int = MAX_MODES_PER_DIM) -> int:
    """Smallest K such that the coefficients beyond max-norm K, weighted by what the fields
    need (|k| h kappa and h kappa', per lattice shell), sum to at most TRUNCATION_TOL; 0 if
    no K <= max_modes does.  Shells are added in doubling chunks until the terms have died out."""
    count = 64
    while True:
        ms = torch.arange(1, count + 1, dtype=torch.float64)
        val, der = _radial(kernel, h, dim, a, ms)
        # below ROUNDOFF (in units of Z) a coefficient is float64 noise of Z kappa - near part
        val = torch.where(val.abs() < ROUNDOFF, torch.zeros_like(val), val)
        der = torch.where(der.abs() < ROUNDOFF * h, torch.zeros_like(der), der)
        term = torch.maximum(ms * h * val.abs(), der.abs()) * _shell_sizes(ms, dim)  # (count,)
        # the far part's coefficients oscillate: bound each shell by the max over the next three
        padded = torch.cat([term, term[-1:].expand(3)])
        term = torch.stack([padded[i : i + count] for i in range(4)]).amax(0)
        tail = term.flip(0).cumsum(0).flip(0)  # tail[i] = sum over shells i+1..count
        # what lies beyond `count` is bounded by the last shells' terms (they decay at least
        # geometrically or like a power above 2 once they are this small)
        rest = float(term[-8:].sum()) * 8
        ok = torch.nonzero(tail + rest <= TRUNCATION_TOL).squeeze(1)
        if ok.numel() > 0:
            return int(ok[0]) if int(ok[0]) <= max_modes else 0
        if count >= max_modes:
            return 0
        count = min(2 * count, max_modes)


@functools.lru_cache(maxsize=32)
def coefficients(kernel: str, h: float, dim: int, modes: int, a: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Fourier coefficients on -modes..modes^D: scalar (kernel or far part) c0 and the radial
    derivative factor cF (so that the first-moment field's coefficient is i k/|k| cF), both
    including Z / (2 pi)^D; and the periodic far kernel's value at 0.  -> (2K+1,)*D x 2, float."""
    k1 = torch.arange(-modes, modes + 1, dtype=torch.float64)
    grids = torch.meshgrid(*([k1] * dim), indexing="ij")
    norm2 = sum(g * g for g in grids)
    uniq, inv = torch.unique(norm2, return_inverse=True)
    val, der = _radial(kernel, h, dim, a, uniq.sqrt())
    scale = mass(kernel, h, dim) / TWO_PI**dim
    c0 = val[inv] * scale
    c_f = der[inv] * scale
    return c0, c_f, float(c0.sum())


# ------------------------------------------------------------------ plan


def _nufft_cost(modes: int, dim: int, n_points: int, n_trans: int) -> float:
    fine = (2 * (2 * modes + 1)) ** dim
    return COST_CALL + n_trans * (COST_MODE * fine * max(1.0, math.log2(fine) / 20)
                                  + COST_POINT * 3 ** (dim - 1) * n_points)


def _stream_cost(field_images: int, n: int, m: int, k: int) -> float:
    return COST_PAIR * n * (m + k) * field_images


@functools.lru_cache(maxsize=256)
def _plan_cached(kernel: str, h: float, dim: int, n: int, m: int, k: int, images: int, threads: int) -> Plan:
    stream = _stream_cost(images, n, m, k) / threads
    best = Plan("stream", cost_s=stream, stream_cost_s=stream)
    if not supported(kernel, dim):
        return best
    n_trans = 2 * (dim + 1)  # type-2 transforms; type-1 counted as one per sample set
    pts = 2 * n + m + k
    k_direct = truncation(kernel, h, dim)
    if k_direct > 0:
        c = _nufft_cost(k_direct, dim, pts, n_trans) / threads
        if c < best.cost_s:
            best = Plan("direct", k_direct, 0.0, c, stream)
    a = _split_radius(dim, n, max(m, k)) if dim <= 2 else 0.0  # the Ewald split is written for 1-D and 2-D
    if dim <= 2 and not 0 < k_direct <= EWALD_MIN_MODES / a:
        k_far = truncation(kernel, h, dim, a)
        if k_far > 0:
            near_pairs = n * (m + k) * _ball_fraction(dim, CUTOFF * a) * NEAR_CANDIDATES[dim]
            c = (_nufft_cost(k_far, dim, pts, n_trans) + COST_NEAR * near_pairs) / threads
            if c < best.cost_s:
                best = Plan("ewald", k_far, a, c, stream)
    return best


def _ball_fraction(dim: int, r: float) -> float:
    """Share of the torus within distance r of a point."""
    vol = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1) * r**dim
    return min(1.0, vol / TWO_PI**dim)


def _split_radius(dim: int, n: int, m: int, threads: int = 1) -> float:
    """Ewald radius a balancing the near pairs (~ n m |ball(CUTOFF a)|) against the far grid
    (~ (FAR_MODES / a)^dim modes), by the cost model; r_c = CUTOFF a at most pi / 2."""
    best_a, best_c = math.pi / 2 / CUTOFF, math.inf
    for i in range(48):
        a = (math.pi / 2 / CUTOFF) * 0.85**i
        k_far = FAR_MODES / a
        if k_far > MAX_MODES_PER_DIM or (dim == 2 and k_far > MAX_MODES_2D):
            break
        c = COST_NEAR * n * m * _ball_fraction(dim, CUTOFF * a) * NEAR_CANDIDATES[dim] + _nufft_cost(int(k_far), dim, 2 * n + m, 2 * (dim + 1))
        if c < best_c:
            best_a, best_c = a, c
    return best_a


@functools.lru_cache(maxsize=1)
def nufft_available() -> bool:
    """Whether FINUFFT can be imported here (without it every field streams)."""
    try:
        import finufft  # noqa: F401
    except ImportError:
        return False
    return True


def plan_for(field: FieldSpec, bandwidth: float, dim: int, n: int, m: int, k: int, device: torch.device) -> Plan:
    """The cheapest exact evaluation of a convolution-form field per the cost model (streaming where
    FINUFFT is not installed)."""
    if not field.periodic or device.type != "cpu" or not nufft_available():
        return Plan("stream")
    images = (2 * field.shells(bandwidth, dim) + 1) ** dim
    threads = torch.get_num_threads()
    stream = _stream_cost(images, n, m, k) / threads
    key = (field.kernel, float(bandwidth), dim)
    if len(_SEEN) > 4096:
        _SEEN.clear()
    seen = _SEEN[key] = _SEEN.get(key, 0) + 1
    if seen * (stream - COST_CALL / threads) < PLAN_BUILD_S:
        return Plan("stream", cost_s=stream, stream_cost_s=stream)  # building a plan would not pay yet
    return _plan_cached(field.kernel, float(bandwidth), dim, n, m, k, images, threads)


def forced_plan(field: FieldSpec, bandwidth: float, dim: int, n: int, m: int) -> Plan:
    """The spectral plan when the field asks for it: direct if its truncation fits, else Ewald."""
    if not field.periodic:
        raise ValueError("backend 'spectral' is for the torus (FieldSpec.periodic = True)")
    if not nufft_available():
        raise ValueError("backend 'spectral' needs FINUFFT (pip install finufft)")
    if not supported(field.kernel, dim):
        raise ValueError(f"backend 'spectral': kernel {field.kernel!r} in dim {dim} has no closed-form "
                         f"transform and mass (theory.SPECTRA, Kernel.mass)")
    k_direct = truncation(field.kernel, bandwidth, dim, 0.0, 1024)
    if k_direct > 0:
        return Plan("direct", k_direct)
    if dim <= 2:
        a = _split_radius(dim, n, m)
        k_far = truncation(field.kernel, bandwidth, dim, a)
        if k_far > 0:
            return Plan("ewald", k_far, a)
    k_direct = truncation(field.kernel, bandwidth, dim)
    if k_direct > 0:
        return Plan("direct", k_direct)
    raise ValueError(f"backend 'spectral': kernel {field.kernel!r} at h = {bandwidth} needs more than "
                     f"{MAX_MODES_PER_DIM} modes per dimension")


# ------------------------------------------------------------------ sums


@dataclass
class Sums:
    """S (N,) and G (N, D) of one sample set at the points, float64."""

    s: torch.Tensor
    g: torch.Tensor
    floor: float  # S below this is not resolved to ~1e-6 relative: redo by streaming


@functools.lru_cache(maxsize=16)
def multipliers(kernel: str, h: float, dim: int, modes: int, a: float, moment: bool) -> torch.Tensor:
    """The (1 + D) coefficient grids that turn the samples' transform a_k into S and G:
    c0, then -i k/|k| cF (moment: sum_j k(u) (y_j - x) = -sum_j F(x - y_j)) or i k c0 (gradient).
    -> (1 + D, 2K+1, ..., 2K+1) complex128."""
    c0, c_f, _ = coefficients(kernel, h, dim, modes, a)
    kvec = torch.meshgrid(*([torch.arange(-modes, modes + 1, dtype=torch.float64)] * dim), indexing="ij")
    if moment:
        norm = torch.sqrt(sum(k * k for k in kvec)).clamp_min(1e-300)
        rows = [-1j * (k / norm) * c_f for k in kvec]
    else:
        rows = [1j * k * c0 for k in kvec]
    return torch.stack([c0.to(torch.complex128), *rows])


def field_sums(x: torch.Tensor, sets: list[tuple[torch.Tensor, bool]], kernel: str, h: float, plan: Plan,
               moment: bool, eps: float) -> list[Sums]:
    """For each sample set (y, self_pairs): S(x) = sum_j k_per(x - y_j) and G(x), the first
    moment sum_j k (y_j - x) over images (moment=True) or the gradient sum_j grad_x k(x - y_j);
    self_pairs: y is x, drop j = i.  One type-1 NUFFT per set, one batched type-2 for all."""
    import numpy as np

    dim, n = x.shape[1], x.shape[0]
    c0, _, at_zero = coefficients(kernel, float(h), dim, plan.modes, plan.a)
    mult = multipliers(kernel, float(h), dim, plan.modes, plan.a, moment)
    xs = torch.remainder(x.detach().to(torch.float64).cpu(), TWO_PI).numpy()
    shape = (2 * plan.modes + 1,) * dim
    opts = {"eps": eps, "nthreads": torch.get_num_threads()}
    grids, pts = [], []
    for y, self_pairs in sets:
        ys = xs if self_pairs else torch.remainder(y.detach().to(torch.float64).cpu(), TWO_PI).numpy()
        a_k = torch.from_numpy(_type1(ys, np.ones(ys.shape[0], dtype=np.complex128), shape, opts))  # sum_j e^{-iky}
        grids.append(mult * a_k)
        pts.append(ys)
    out = _type2(xs, np.ascontiguousarray(torch.cat(grids).numpy()), opts)  # (sets (1 + D), N)
    res = torch.from_numpy(out.real.copy()).view(len(sets), 1 + dim, n)
    sums = []
    for idx, ((y, self_pairs), ys) in enumerate(zip(sets, pts)):
        s, g = res[idx, 0].clone(), res[idx, 1:].T.contiguous()
        if plan.a > 0.0:
            ns, ng = near_sums(torch.from_numpy(xs), torch.from_numpy(ys), kernel, h, plan.a, moment, self_pairs)
            s, g = s + ns, g + ng
        if self_pairs:
            s = s - at_zero  # the self pair's periodic (far) kernel; its vector terms vanish by symmetry
        # error per point: NUFFT ~ eps sum_k |c_k a_k| (|a_0| = M, |a_k| ~ sqrt(M) otherwise), plus
        # the truncated tail, at most TRUNCATION_TOL / min(h, 1) of M Z / (2 pi)^D
        m = ys.shape[0]
        unit = m * mass(kernel, h, dim) / TWO_PI**dim
        nufft_err = eps * (m * abs(float(c0.reshape(-1)[c0.numel() // 2])) + math.sqrt(m) * float(c0.abs().sum()))
        floor = FALLBACK * (nufft_err + TRUNCATION_TOL / min(h, 1.0) * unit)
        sums.append(Sums(s.to(x.device), g.to(x.device), floor))
    return sums


def _type1(pts, c, shape, opts):
    import finufft
    import numpy as np

    pts = [np.ascontiguousarray(pts[:, i]) for i in range(pts.shape[1])]
    if len(shape) == 1:
        return finufft.nufft1d1(*pts, c, shape, isign=-1, **opts)
    if len(shape) == 2:
        return finufft.nufft2d1(*pts, c, shape, isign=-1, **opts)
    return finufft.nufft3d1(*pts, c, shape, isign=-1, **opts)


def _type2(pts, f, opts):
    import finufft
    import numpy as np

    dim = pts.shape[1]
    pts = [np.ascontiguousarray(pts[:, i]) for i in range(dim)]
    if dim == 1:
        return finufft.nufft1d2(*pts, f, isign=1, **opts)
    if dim == 2:
        return finufft.nufft2d2(*pts, f, isign=1, **opts)
    return finufft.nufft3d2(*pts, f, isign=1, **opts)


NEAR_CHUNK_PAIRS = 1 << 18  # candidate pairs per chunk of the cell-list loop (2 MiB per float64 column: cache-sized; 1.4x faster than 1 << 22)


def near_sums(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, a: float, moment: bool,
              self_pairs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Real-space sums of the near kernel k chi over pairs closer than r_c = CUTOFF a (r_c < pi,
    so the minimum image is the only one), by a cell list.  x (N, D), y (M, D) float64 in
    [0, 2pi).  -> S (N,), G (N, D)."""
    n, dim = x.shape
    kern = KERNELS.get(kernel)
    r_c = CUTOFF * a
    cells = max(1, int(TWO_PI / r_c))
    s_out = torch.zeros(n, dtype=torch.float64)
    g_out = torch.zeros(n, dim, dtype=torch.float64)
    if cells < 3:
        cells = 1
    side = TWO_PI / cells
    weights = torch.tensor([cells**d for d in range(dim)])
    cy = (y / side).long().clamp_(0, cells - 1)  # (M, D)
    cid_y = (cy * weights).sum(1)
    order = torch.argsort(cid_y)
    ys = y[order]
    counts = torch.bincount(cid_y, minlength=cells**dim)
    starts = counts.cumsum(0) - counts
    cx = (x / side).long().clamp_(0, cells - 1)  # (N, D)
    offsets = [(0,) * dim] if cells == 1 else torch.cartesian_prod(*([torch.tensor([-1, 0, 1])] * dim)).reshape(-1, dim).tolist()
    for off in offsets:
        nb = ((cx + torch.tensor(off)) % cells * weights).sum(1)  # (N,)
        cnt, st = counts[nb], starts[nb]
        ends = cnt.cumsum(0)
        i0 = 0
        while i0 < n:
            base = int(ends[i0 - 1]) if i0 > 0 else 0
            i1 = int(torch.searchsorted(ends, base + NEAR_CHUNK_PAIRS, right=True))
            i1 = max(i1, i0 + 1)
            c = cnt[i0:i1]
            total = int(c.sum())
            if total > 0:
                xi = torch.repeat_interleave(torch.arange(i0, i1), c)  # (P,)
                first = torch.repeat_interleave(c.cumsum(0) - c, c)
                j = st[xi] + (torch.arange(total) - first)  # (P,) into ys
                u = x[xi] - ys[j]  # (P, D): x - y
                u -= TWO_PI * torch.round(u / TWO_PI)
                r2 = u.square().sum(1)
                keep = r2 < r_c * r_c
                if self_pairs:
                    keep &= order[j] != xi
                xi, u, r2 = xi[keep], u[keep], r2[keep]
                r = r2.sqrt()
                ra = (r / a) ** CHI_POWER
                g = torch.exp(kern.log(r, h, dim) - ra)  # (P,)
                s_out.index_add_(0, xi, g)
                if moment:
                    g_out.index_add_(0, xi, -g.unsqueeze(1) * u)  # k chi (y - x)
                else:
                    rs = r.clamp_min(1e-300)
                    dg = g * (kern.dlog(r, h, dim) - CHI_POWER * ra / rs)  # d(k chi)/dr
                    g_out.index_add_(0, xi, (dg / rs).unsqueeze(1) * u)  # grad_x: g'(r) (x - y)/r
            i0 = i1
    return s_out, g_out


# ------------------------------------------------------------------ operators


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where((den > 0).unsqueeze(1), num / safe.unsqueeze(1), torch.zeros_like(num))


def _sides(x, pos, neg, field: FieldSpec, h: float, plan: Plan, moment: bool) -> tuple[Sums, Sums]:
    eps = NUFFT_EPS.get(x.dtype, 1e-12)
    sp, sn = field_sums(x, [(pos, False), (neg, field.neg_is_x)], field.kernel, h, plan, moment, eps)
    return sp, sn


def _redo_normalised(x, pos, neg, field: FieldSpec, h: float, sides: tuple[Sums, Sums], grad_weight: bool) -> None:
    """Points whose normaliser is below what the NUFFT resolves: exact streaming sums instead."""
    from . import streaming

    geo = streaming.geometry(field, h, x.shape[1])
    for sums, y, mask in ((sides[0], pos, False), (sides[1], neg, field.neg_is_x)):
        bad = torch.nonzero(~(sums.s > sums.floor)).squeeze(1)
        if bad.numel() == 0:
            continue
        # max-shifted sums: only their ratio is used, and it is exact
        res, _ = streaming.normalised_pass_subset(x[bad], y, geo, mask, bad, disp=True, grad_weight=grad_weight)
        sums.s[bad] = res.s.to(sums.s.device)
        sums.g[bad] = res.disp.to(sums.g.device)


def meanshift(x, pos, neg, field: FieldSpec, plan: Plan, h: Optional[float] = None) -> torch.Tensor:
    """Spectral mean-shift drift on the torus.  -> (N, D)."""
    h = field.bandwidth if h is None else h
    sides = _sides(x, pos, neg, field, h, plan, moment=True)
    _redo_normalised(x, pos, neg, field, h, sides, grad_weight=False)
    sp, sn = sides
    return (_ratio(sp.g, sp.s) - _ratio(sn.g, sn.s)).to(x.dtype)


def score(x, pos, neg, field: FieldSpec, plan: Plan, h: Optional[float] = None) -> torch.Tensor:
    """Spectral h^2 (grad log p_h - grad log q_h) on the torus.  -> (N, D)."""
    h = field.bandwidth if h is None else h
    sides = _sides(x, pos, neg, field, h, plan, moment=False)
    _redo_normalised(x, pos, neg, field, h, sides, grad_weight=True)
    sp, sn = sides
    return (h * h * (_ratio(sp.g, sp.s) - _ratio(sn.g, sn.s))).to(x.dtype)


def mmd(x, pos, neg, field: FieldSpec, plan: Plan, h: Optional[float] = None) -> torch.Tensor:
    """Spectral E_p[grad k] - E_q[grad k] on the torus (absolute sums: no fallback needed)."""
    h = field.bandwidth if h is None else h
    sp, sn = _sides(x, pos, neg, field, h, plan, moment=False)
    n_neg = neg.shape[0] - (1 if field.neg_is_x else 0)
    return (sp.g / pos.shape[0] - sn.g / max(n_neg, 1)).to(x.dtype)


SPECTRAL_IMPLEMENTATIONS = {"meanshift": meanshift, "score": score, "mmd": mmd}
