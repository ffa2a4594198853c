"""Linear theory of docs/theory.md (per-mode rates, convergence time): per-mode rates, annealed decay, convergence time.

Pure Python (math only): no torch, no numpy, so `analysis` can import it.  Each kernel with a
known Fourier transform has a `Spectral` entry under the same name as in `kernels.KERNELS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional


def _exp(x):
    """exp of a float, or elementwise of an array-like with an `.exp()` method (a torch tensor), so the
    spectral backend evaluates these closed forms on whole coefficient grids without importing torch here."""
    return math.exp(x) if isinstance(x, (int, float)) else x.exp()


@dataclass(frozen=True)
class Spectral:
    """Normalised Fourier transform kappa(s, dim), kappa(0) = 1, and the mode decay -s kappa'(s).

    `decay(|k| h, dim)` is lambda(k) at bandwidth h (`rate` is the annealing rate r elsewhere).
    """

    kappa: Callable[[float, int], float]
    decay: Callable[[float, int], float]


SPECTRA: dict[str, Spectral] = {
    "gaussian": Spectral(
        kappa=lambda s, d: _exp(-0.5 * s * s),
        decay=lambda s, d: s * s * _exp(-0.5 * s * s),
    ),
    "laplacian": Spectral(
        kappa=lambda s, d: (1.0 + s * s) ** (-(d + 1) / 2.0),
        decay=lambda s, d: (d + 1) * s * s * (1.0 + s * s) ** (-(d + 3) / 2.0),
    ),
    "cauchy": Spectral(
        kappa=lambda s, d: _exp(-s),
        decay=lambda s, d: s * _exp(-s),
    ),
}


def spectral(kernel: str) -> Spectral:
    """Spectral entry of `kernel`; KeyError names the kernels with a known transform."""
    try:
        return SPECTRA[kernel]
    except KeyError:
        raise KeyError(f"no Fourier transform known for kernel {kernel!r}; known: {', '.join(SPECTRA)}") from None


def decay_rate(kernel: str, k: float, bandwidth: float, dim: int = 1) -> float:
    """lambda(k) = -|k| h kappa'(|k| h): linear decay rate of mode k at fixed bandwidth."""
    return spectral(kernel).decay(abs(k) * bandwidth, dim)


def log_decay_exponential(
    kernel: str, k: float, t: float, h0: float, rate: float, h_min: float = 0.0, dim: int = 1
) -> float:
    """log(u_k(t)/u_k(0)) under h(t) = max(h0 exp(-r t), h_min) (closed form, then constant rate)."""
    sp = spectral(kernel)
    k = abs(k)
    if rate <= 0.0:
        return -t * sp.decay(k * h0, dim)
    t_floor = math.inf if h_min <= 0.0 else max(0.0, math.log(h0 / h_min) / rate)
    t1 = min(t, t_floor)
    h1 = h0 * math.exp(-rate * t1)
    out = -(sp.kappa(k * h1, dim) - sp.kappa(k * h0, dim)) / rate
    if t > t_floor:
        out -= (t - t_floor) * sp.decay(k * h_min, dim)
    return out


def mode_time(
    kernel: str, k: float, eps: float, h0: float, rate: float = 0.0, h_min: float = 0.0, dim: int = 1
) -> float:
    """First t with u_k(t)/u_k(0) <= eps (math.inf if never)."""
    target = math.log(eps)
    sp = spectral(kernel)
    if rate <= 0.0:
        lam = sp.decay(abs(k) * h0, dim)
        return math.inf if lam <= 0.0 else -target / lam
    t_floor = math.inf if h_min <= 0.0 else max(0.0, math.log(h0 / h_min) / rate)
    if math.isfinite(t_floor):
        at_floor = log_decay_exponential(kernel, k, t_floor, h0, rate, h_min, dim)
        if at_floor > target:
            lam = sp.decay(abs(k) * h_min, dim)
            return math.inf if lam <= 0.0 else t_floor + (at_floor - target) / lam
        hi = t_floor
    else:
        # kappa -> 1 as h -> 0, so the total decay is bounded by (1 - kappa(k h0)) / r
        if -(1.0 - sp.kappa(abs(k) * h0, dim)) / rate > target:
            return math.inf
        hi = 1.0
        while log_decay_exponential(kernel, k, hi, h0, rate, 0.0, dim) > target:
            hi *= 2.0
    lo = 0.0
    for _ in range(100):  # log_decay is monotone decreasing in t: bisect
        mid = 0.5 * (lo + hi)
        if log_decay_exponential(kernel, k, mid, h0, rate, h_min, dim) > target:
            lo = mid
        else:
            hi = mid
    return hi


def convergence_time(
    kernel: str,
    k_max: int,
    eps: float = 0.1,
    h0: float = 1.0,
    rate: float = 0.0,
    h_min: float = 0.0,
    dim: int = 1,
    k_min: int = 1,
    modes: Optional[Iterable[float]] = None,
) -> float:
    """Predicted T(K_max, eps): the slowest of the modes |k| in k_min..k_max (or `modes`)."""
    ks = list(modes) if modes is not None else list(range(k_min, k_max + 1))
    return max(mode_time(kernel, k, eps, h0, rate, h_min, dim) for k in ks)
