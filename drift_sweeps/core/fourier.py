"""Fourier coefficients of the periodic kernel on the torus (the spectral backend's tables).

For a kernel with a closed-form normalised transform kappa (`theory.SPECTRA`) and a mass
Z = int k (`Kernel.mass`), the periodic kernel, its gradient and its first moment have the
coefficients Z kappa(|k| h), i k Z kappa(|k| h) and i k/|k| Z h kappa'(|k| h) (over (2 pi)^D).
With an Ewald split radius a > 0 these are the far part's: the near part k chi (near.py) has
its transform subtracted, by Gauss-Legendre quadrature (`_near_radial`; in 2-D of its projection on a
line).  `truncation` picks the number of modes from a tail bound; `coefficients` and `multipliers` are
the tables one bandwidth needs, cached, so a fixed bandwidth builds them once.
"""

from __future__ import annotations

import functools
import math

import torch

from ..spine import theory
from .geometry import TWO_PI
from .kernels import KERNELS
from .near import CHI_POWER, CUTOFF

TRUNCATION_TOL = 1e-10  # Fourier tail bound, in units of kappa(0) = 1, summed over the lattice
NEAR_TABLE_STEP = 0.05  # near-part transform tabulated every NEAR_TABLE_STEP / r_c in s, then interpolated ...
NEAR_TABLE_ORDER = 8  # ... by Lagrange polynomials through this many table nodes
ROUNDOFF = 1e-12  # coefficients (in units of the mass Z) below this are quadrature and float64 noise
MAX_MODES_PER_DIM = 8192  # direct/Ewald Fourier grids beyond this are not attempted


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


def _shell_sizes(m: torch.Tensor, dim: int) -> torch.Tensor:
    """Lattice points with max-norm exactly m."""
    return (2 * m + 1) ** dim - (2 * m - 1).clamp_min(0) ** dim


def _near_radial(kernel: str, h: float, dim: int, a: float, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform of the near part k chi at radial frequency s, and its s-derivative.  -> 2 x like s.

    Many frequencies (a 2-D grid's distinct |k|): the quadrature runs on a uniform table of spacing
    NEAR_TABLE_STEP / r_c and is interpolated through NEAR_TABLE_ORDER nodes.  The near part lives on r < r_c,
    so its transform is an entire function whose n-th derivative is at most r_c^n times its size, and the
    interpolation error is about (NEAR_TABLE_STEP)^p / (4 p) of it: 1.2e-12 at step 0.05 and p = 8 (measured
    against the direct quadrature in tests/core/test_spectral.py; 5x fewer nodes than the 4-point table of
    step 0.01 it replaces)."""
    r_c = CUTOFF * a
    flat = s.reshape(-1)
    step = NEAR_TABLE_STEP / r_c
    top = float(flat.max()) if flat.numel() else 0.0
    below = NEAR_TABLE_ORDER // 2 - 1  # table nodes at s < 0 (the transform is even in s, its derivative odd)
    if flat.numel() > top / step + NEAR_TABLE_ORDER:  # fewer table nodes than frequencies: the table is cheaper
        nodes = torch.arange(-below, int(top / step) + NEAR_TABLE_ORDER, dtype=torch.float64) * step
        tv, td = _near_radial_direct(kernel, h, dim, a, nodes.abs())
        td = td * torch.sign(nodes)
        return (_lagrange(tv, flat, step, below).view(s.shape), _lagrange(td, flat, step, below).view(s.shape))
    return _near_radial_direct(kernel, h, dim, a, s)


def _lagrange(table: torch.Tensor, s: torch.Tensor, step: float, below: int) -> torch.Tensor:
    """Interpolation of a table on s = (i - below) step, i = 0.., at s >= 0, by the Lagrange polynomial through
    the NEAR_TABLE_ORDER nodes around s (below + 1 at or below it)."""
    order = NEAR_TABLE_ORDER
    u = s / step + below
    i = u.floor().long().clamp(below, table.numel() - order + below)
    f = u - i  # in [0, 1): s between node i and i + 1
    offsets = range(-below, order - below)
    out = torch.zeros_like(s)
    for j in offsets:
        w = torch.ones_like(s)
        for m in offsets:
            if m != j:
                w = w * (f - m) / (j - m)
        out = out + w * table[i + j]
    return out


def _near_radial_direct(kernel: str, h: float, dim: int, a: float, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """_near_radial by Gauss-Legendre quadrature at every s: in 1-D the cosine transform of k chi on [0, r_c]; in
    2-D the same of its projection (`_projection`), since a radial function's 2-D transform along any direction is
    the 1-D transform of its projection on that line (no Bessel function: cosines and sines only, about half the
    time of scipy's J0 and J1 at each node)."""
    r_c = CUTOFF * a
    if dim not in (1, 2):
        raise ValueError("Ewald split: dim 1 or 2")
    # Gauss-Legendre: ~4 nodes per oscillation in 1-D (against 6400 nodes within 5e-12 of Z, h = 0.002-2.5,
    # a = 0.11-0.67); 2-D: x = r_c v^2 smooths the projection's x^2 log x at 0 (exponential kernels), and 0.8 s r_c
    # nodes are within 4e-13 of Z of the Bessel quadrature at 6000 nodes (5 kernels, h = 0.02-2.5, a = 0.05-0.98,
    # s <= 2000); in steps of 64, so the cached rules are reused as h changes
    n_q = int(min(6000, (0.6 if dim == 1 else 0.8) * float(s.max()) * r_c + 64))
    nodes, weights = _gauss_legendre(-(-n_q // 64) * 64)
    if dim == 1:
        x = 0.5 * r_c * (nodes + 1.0)  # (Q,)
        g = torch.exp(KERNELS.get(kernel).log(x, h, dim) - (x / a) ** CHI_POWER) * (0.5 * r_c * weights)
    else:
        v = 0.5 * (nodes + 1.0)
        x = r_c * v * v
        g = _projection(kernel, h, a, x) * (r_c * v * weights)  # dx = 2 r_c v dv, dv = w / 2
    sx = s.reshape(-1, 1) * x  # (S, Q)
    val = torch.cos(sx) @ (2.0 * g)
    der = torch.sin(sx) @ (-2.0 * g * x)
    return val.view(s.shape), der.view(s.shape)


PROJECTION_NODES = 96  # Gauss-Legendre nodes in u of each projection integral (within 3e-14 of Z of 384 nodes;
# 64: 2e-12, 48: 3e-11; 5 kernels, h = 0.002-2.5, a = 0.05-0.98)


def _projection(kernel: str, h: float, a: float, x: torch.Tensor) -> torch.Tensor:
    """A(x) = int k chi(sqrt(x^2 + y^2)) dy over the line, 0 < x < r_c: with y = x sinh u, r = x cosh u,
    A(x) = 2 int_0^U k chi(r) r du up to r = r_c (U = arccosh(r_c / x)), whose integrand is smooth in u even
    where k has a cusp at 0 and x is tiny (it runs over log r).  -> like x."""
    r_c = CUTOFF * a
    nodes, weights = _gauss_legendre(PROJECTION_NODES)
    top = torch.acosh((r_c / x).clamp_min(1.0))  # (Q,)
    u = 0.5 * top[:, None] * (nodes + 1.0)  # (Q, P)
    r = x[:, None] * torch.cosh(u)
    f = torch.exp(KERNELS.get(kernel).log(r, h, 2) - (r / a) ** CHI_POWER) * r
    return (f * weights).sum(1) * top  # 2 * (top / 2) * sum


@functools.lru_cache(maxsize=128)
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


H_BINS_PER_OCTAVE = 16  # the direct truncation at a new h is estimated from the bin edge's, 2^(i / 16) below it
FIRST_SHELLS = 64  # the truncation search's first chunk of shells (then doubling)


def bin_edge(h: float, up: bool = False) -> float:
    """The bandwidth bin's edge at or below h (at or above it: up), 2^(i / H_BINS_PER_OCTAVE), to rounding: what a
    new h is priced at (h itself where no edge is a finite float)."""
    try:
        return 2.0 ** ((math.ceil if up else math.floor)(H_BINS_PER_OCTAVE * math.log2(h)) / H_BINS_PER_OCTAVE)
    except (OverflowError, ValueError):
        return h


def modes_estimate(kernel: str, h: float, dim: int) -> int:
    """The direct truncation K at h, estimated from K at the bin edge below h (computed once per bin, its search
    from FIRST_SHELLS): the coefficients are functions of |k| h, so K h is nearly constant (measured within 5% over
    h = 0.05..2.5); 0 where the grid does not fit.  Cheap at a new bandwidth (an annealed schedule's every step)."""
    h_bin = bin_edge(h)
    k_bin = truncation(kernel, h_bin, dim, started=False)
    return min(math.ceil(k_bin * h_bin / h), MAX_MODES_PER_DIM) if k_bin > 0 else 0


def _first_count(kernel: str, h: float, dim: int, a: float, max_modes: int) -> int:
    """Where the doubling search may start: the largest FIRST_SHELLS 2^j below 0.9 of the estimated K (a direct
    truncation).  The search from FIRST_SHELLS stops at the first chunk longer than its answer, so every chunk
    skipped would have found no K unless the estimate is about twice the answer: it returns the same K, in fewer
    rounds."""
    count = FIRST_SHELLS
    if a > 0.0 or not 0.0 < h < math.inf:
        return count
    limit = min(0.9 * modes_estimate(kernel, h, dim), max_modes)
    while 2 * count <= limit:
        count *= 2
    return count


@functools.lru_cache(maxsize=256)
def truncation(kernel: str, h: float, dim: int, a: float = 0.0, max_modes: int = MAX_MODES_PER_DIM,
               started: bool = True) -> int:
    """Smallest K such that the coefficients beyond max-norm K, weighted by what the fields
    need (|k| h kappa and h kappa', per lattice shell), sum to at most TRUNCATION_TOL; 0 if
    no K <= max_modes does.  Shells are added in doubling chunks until the terms have died out (started: from
    `_first_count`, at a new bandwidth one or two rounds instead of up to eight; else from FIRST_SHELLS)."""
    count, vals, ders = _first_count(kernel, h, dim, a, max_modes) if started else FIRST_SHELLS, [], []
    while True:
        ms = torch.arange(1, count + 1, dtype=torch.float64)
        v, d = _radial(kernel, h, dim, a, ms[sum(t.numel() for t in vals):])  # only the shells not yet done
        vals.append(v)
        ders.append(d)
        val, der = torch.cat(vals), torch.cat(ders)
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


def _distinct(norm2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.unique(norm2, return_inverse=True) for squared lattice norms (integers, exact in float64), in O(n) by
    marking the values present instead of sorting where they span no more than 4 n (D >= 2): a few ms instead of 43
    at K = 385 in 2-D (the sort was the build's largest part).  -> (the distinct values ascending, float64; each
    entry's index among them)."""
    ints = norm2.to(torch.int64).reshape(-1)
    top = int(ints.max())
    if top > 4 * ints.numel():  # a 1-D grid: K^2 values for 2 K + 1 entries, sorting is cheaper
        return torch.unique(norm2, return_inverse=True)
    present = torch.zeros(top + 1, dtype=torch.bool)
    present[ints] = True
    rank = torch.cumsum(present, 0) - 1  # a value's index among the values present
    return torch.nonzero(present).squeeze(1).to(torch.float64), rank[ints].reshape(norm2.shape)


@functools.lru_cache(maxsize=32)
def coefficients(kernel: str, h: float, dim: int, modes: int, a: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Fourier coefficients on -modes..modes^D: scalar (kernel or far part) c0 and the radial
    derivative factor cF (so that the first-moment field's coefficient is i k/|k| cF), both
    including Z / (2 pi)^D; and the periodic far kernel's value at 0.  -> (2K+1,)*D x 2, float."""
    k1 = torch.arange(-modes, modes + 1, dtype=torch.float64)
    grids = torch.meshgrid(*([k1] * dim), indexing="ij")
    norm2 = sum(g * g for g in grids)
    uniq, inv = _distinct(norm2)
    val, der = _radial(kernel, h, dim, a, uniq.sqrt())
    scale = mass(kernel, h, dim) / TWO_PI**dim
    c0 = val[inv] * scale
    c_f = der[inv] * scale
    return c0, c_f, float(c0.sum())


@functools.lru_cache(maxsize=16)
def multipliers(kernel: str, h: float, dim: int, modes: int, a: float, moment: bool) -> torch.Tensor:
    """The (1 + D) coefficient grids that turn the samples' transform a_k into S and G:
    c0, then -i k/|k| cF (moment: sum_j k(u) (y_j - x) = -sum_j F(x - y_j)) or i k c0 (gradient).
    -> (1 + D, 2K+1, ..., 2K+1) complex128."""
    c0, c_f, _ = coefficients(kernel, h, dim, modes, a)
    kvec = torch.meshgrid(*([torch.arange(-modes, modes + 1, dtype=torch.float64)] * dim), indexing="ij")
    out = torch.zeros(1 + dim, *c0.shape, dtype=torch.complex128)
    parts = torch.view_as_real(out)  # (1 + D, ..., 2): the real and imaginary parts written in place (no complex
    parts[0, ..., 0] = c0  # products: a third of the build's time at K = 385 in 2-D)
    if moment:
        norm = torch.sqrt(sum(k * k for k in kvec)).clamp_min(1e-300)
        for d, k in enumerate(kvec):
            torch.mul(k / norm, c_f, out=parts[1 + d, ..., 1]).neg_()
    else:
        for d, k in enumerate(kvec):
            torch.mul(k, c0, out=parts[1 + d, ..., 1])
    return out
