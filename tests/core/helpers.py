"""Shared constructions for the core tests: quantile-placed particles and exact uniform data."""

from __future__ import annotations

import math

import torch

TWO_PI = 2.0 * math.pi


def quantile_particles(n: int, amps: dict[int, float]) -> torch.Tensor:
    """Deterministic particles x_i = F^-1((i + 1/2)/n) of (1 + sum_k a_k cos(k x)) / 2pi on [0, 2pi).

    Quantile placement has no sampling noise, so Fourier coefficients of the particle set equal
    the density's up to O(k^2 / n^2).  -> (n, 1) float64.
    """
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    lo, hi = torch.zeros(n, dtype=torch.float64), torch.full((n,), TWO_PI, dtype=torch.float64)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        cdf = mid + sum(a / k * torch.sin(k * mid) for k, a in amps.items())
        below = cdf / TWO_PI < u
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).unsqueeze(1)


def uniform_grid(m: int) -> torch.Tensor:
    """The exact uniform law on the circle as m equally spaced points.  -> (m, 1) float64."""
    return (TWO_PI * (torch.arange(m, dtype=torch.float64) + 0.5) / m).unsqueeze(1)


def mode(x: torch.Tensor, k: int) -> complex:
    """E_q exp(i k x) over the particle set."""
    arg = k * x[:, 0]
    return complex(torch.cos(arg).mean(), torch.sin(arg).mean())


def simulate_meanshift(x: torch.Tensor, y: torch.Tensor, field, ks: list[int], dt: float, steps: int) -> list[list[complex]]:
    """x <- x + dt V(x) with the mean-shift drift, the particles as negatives; the x-modes ks after each step."""
    from drift_sweeps.core.geometry import wrap
    from drift_sweeps.core.operators import drift

    out = [[mode(x, k) for k in ks]]
    for _ in range(steps):
        with torch.no_grad():
            x = wrap(x + dt * drift("meanshift", x, y, x, field))
        out.append([mode(x, k) for k in ks])
    return out
