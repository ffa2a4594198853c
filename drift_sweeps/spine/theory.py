"""Linear theory of docs/theory.md (per-mode rates, convergence time): per-mode rates, annealed decay, convergence time.

Pure Python (math only): no torch, no numpy, so `analysis` can import it.  Each kernel with a
known Fourier transform has a `Spectral` entry under the same name as in `kernels.KERNELS`.
A kernel family with a shape key (the rational quadratic's alpha, config key `kernel_shape`) has
its entry at `DEFAULT_SHAPE` in SPECTRA and every member from `spectral(kernel, shape)`; the
functions below take that `shape` as an optional last argument.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

DEFAULT_SHAPE = 2.0  # rational_quadratic's alpha unless kernel_shape says otherwise (valid for dim <= 3)


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


def matern(nu: float) -> Spectral:
    """The Matern kernel of smoothness nu with length h (k = 2^(1-nu)/Gamma(nu) (sqrt(2 nu) r/h)^nu
    K_nu(sqrt(2 nu) r/h); nu = 1/2 is the Laplacian): kappa(s) = (1 + s^2 / (2 nu))^-(nu + d/2) in d dims."""

    def kappa(s, d):
        return (1.0 + s * s / (2.0 * nu)) ** (-(nu + d / 2.0))

    def decay(s, d):
        return (nu + d / 2.0) / nu * s * s * (1.0 + s * s / (2.0 * nu)) ** (-(nu + d / 2.0 + 1.0))

    return Spectral(kappa=kappa, decay=decay)


def bessel_k(nu: float, x: float) -> float:
    """Modified Bessel function of the second kind K_nu(x), x > 0, any real order.

    Trapezoid rule on K_nu(x) = int_0^inf exp(-x cosh t) cosh(nu t) dt: the integrand is entire
    and decays double-exponentially, so the rule converges geometrically; a step of
    0.4 / sqrt(max(x, |nu|, 4)) resolves its peak (width ~ 1/sqrt(x) at t = 0, ~ 1/sqrt(nu) at
    its maximum), and the sum stops when its terms fall below 1e-17 of the total.  Measured
    against scipy.special.kv for nu in [0, 30], x in [1e-8, 700]: relative error below 1e-13
    (tests/core/test_kernels_2026.py), at most ~330 terms.
    """
    if x <= 0.0:
        raise ValueError(f"bessel_k needs x > 0, got {x!r}")
    nu = abs(nu)
    step = 0.4 / math.sqrt(max(x, nu, 4.0))
    total, prev, k = 0.5, 1.0, 1
    while k < 100_000:
        t = k * step
        e = -2.0 * x * math.sinh(0.5 * t) ** 2  # -x (cosh t - 1): the e^-x factor comes out
        term = 0.5 * (math.exp(nu * t + e) + math.exp(e - nu * t))
        total += term
        if term < 1e-17 * total and term <= prev:
            break
        prev, k = term, k + 1
    return step * total * math.exp(-x)


def rational_quadratic(alpha: float) -> Spectral:
    """k = (1 + r^2/h^2)^-alpha, alpha > d/2: with nu = alpha - d/2 its normalised transform is the
    Matern correlation kappa(s) = 2^(1-nu)/Gamma(nu) s^nu K_nu(s), and since d/ds (s^nu K_nu) =
    -s^nu K_(nu-1), decay = 2^(1-nu)/Gamma(nu) s^(nu+1) K_(nu-1)(s).  alpha = (d+1)/2 (nu = 1/2)
    is the Cauchy kernel, kappa = exp(-s).  Floats only (`bessel_k` is pure Python)."""

    def order(d: int) -> float:
        nu = alpha - d / 2.0
        if nu <= 0.0:
            raise ValueError(f"rational_quadratic: alpha = kernel_shape = {alpha} must be > dim/2 = {d / 2} "
                             "(the kernel is not integrable otherwise)")
        return nu

    def kappa(s, d):
        nu = order(d)
        if s <= 0.0:
            return 1.0
        return math.exp((1.0 - nu) * math.log(2.0) - math.lgamma(nu) + nu * math.log(s)) * bessel_k(nu, s)

    def decay(s, d):
        nu = order(d)
        if s <= 0.0:
            return 0.0
        return math.exp((1.0 - nu) * math.log(2.0) - math.lgamma(nu) + (nu + 1.0) * math.log(s)) * bessel_k(nu - 1.0, s)

    return Spectral(kappa=kappa, decay=decay)


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
    "matern32": matern(1.5),
    "matern52": matern(2.5),
    "rational_quadratic": rational_quadratic(DEFAULT_SHAPE),
}

# kernel families: name -> the Spectral entry of the member with that shape
SHAPED: dict[str, Callable[[float], Spectral]] = {"rational_quadratic": rational_quadratic}


@functools.lru_cache(maxsize=256)
def _shaped(kernel: str, shape: float) -> Spectral:
    return SHAPED[kernel](shape)


def spectral(kernel: str, shape: Optional[float] = None) -> Spectral:
    """Spectral entry of `kernel` (of its member `shape` for a family); KeyError names the kernels with a
    known transform."""
    if shape is not None and kernel in SHAPED:
        return _shaped(kernel, float(shape))
    try:
        return SPECTRA[kernel]
    except KeyError:
        raise KeyError(f"no Fourier transform known for kernel {kernel!r}; known: {', '.join(SPECTRA)}") from None


def decay_rate(kernel: str, k: float, bandwidth: float, dim: int = 1, shape: Optional[float] = None) -> float:
    """lambda(k) = -|k| h kappa'(|k| h): linear decay rate of mode k at fixed bandwidth."""
    return spectral(kernel, shape).decay(abs(k) * bandwidth, dim)


def log_decay_exponential(
    kernel: str, k: float, t: float, h0: float, rate: float, h_min: float = 0.0, dim: int = 1,
    shape: Optional[float] = None,
) -> float:
    """log(u_k(t)/u_k(0)) under h(t) = max(h0 exp(-r t), h_min) (closed form, then constant rate)."""
    sp = spectral(kernel, shape)
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
    kernel: str, k: float, eps: float, h0: float, rate: float = 0.0, h_min: float = 0.0, dim: int = 1,
    shape: Optional[float] = None,
) -> float:
    """First t with u_k(t)/u_k(0) <= eps (math.inf if never)."""
    target = math.log(eps)
    sp = spectral(kernel, shape)
    if rate <= 0.0:
        lam = sp.decay(abs(k) * h0, dim)
        return math.inf if lam <= 0.0 else -target / lam
    t_floor = math.inf if h_min <= 0.0 else max(0.0, math.log(h0 / h_min) / rate)
    if math.isfinite(t_floor):
        at_floor = log_decay_exponential(kernel, k, t_floor, h0, rate, h_min, dim, shape)
        if at_floor > target:
            lam = sp.decay(abs(k) * h_min, dim)
            return math.inf if lam <= 0.0 else t_floor + (at_floor - target) / lam
        hi = t_floor
    else:
        # kappa -> 1 as h -> 0, so the total decay is bounded by (1 - kappa(k h0)) / r
        if -(1.0 - sp.kappa(abs(k) * h0, dim)) / rate > target:
            return math.inf
        hi = 1.0
        while log_decay_exponential(kernel, k, hi, h0, rate, 0.0, dim, shape) > target:
            hi *= 2.0
    lo = 0.0
    for _ in range(100):  # log_decay is monotone decreasing in t: bisect
        mid = 0.5 * (lo + hi)
        if log_decay_exponential(kernel, k, mid, h0, rate, h_min, dim, shape) > target:
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
    shape: Optional[float] = None,
) -> float:
    """Predicted T(K_max, eps): the slowest of the modes |k| in k_min..k_max (or `modes`)."""
    ks = list(modes) if modes is not None else list(range(k_min, k_max + 1))
    return max(mode_time(kernel, k, eps, h0, rate, h_min, dim, shape) for k in ks)
