"""Per-frequency errors and a sample distance (the N-sample noise floor is `drift_sweeps.spine.record.noise_floor`)."""

from __future__ import annotations

import itertools

import torch

from .geometry import distance


def frequencies(dim: int, k_max: int) -> torch.Tensor:
    """Integer vectors with 1 <= max|k_i| <= k_max, one of each +-k pair.  -> (F, D) long."""
    rng = range(-k_max, k_max + 1)
    out = []
    for k in itertools.product(rng, repeat=dim):
        nz = [c for c in k if c != 0]
        if nz and nz[0] > 0:  # canonical half-space: first non-zero coordinate positive
            out.append(k)
    out.sort(key=lambda k: (max(abs(c) for c in k), k))
    return torch.tensor(out, dtype=torch.long).reshape(-1, dim)


def empirical_fourier(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """E_q exp(i k.x) over the samples x (N, D) for freqs (F, D) -> complex (F,)."""
    arg = x.to(torch.float64) @ freqs.to(x.device, torch.float64).T  # (N, F)
    return torch.complex(torch.cos(arg).mean(0), torch.sin(arg).mean(0))


def spectrum_error(x: torch.Tensor, freqs: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """e_k = |E_q exp(i k.x) - phi_p(k)|.  -> (F,) float64."""
    return (empirical_fourier(x, freqs) - exact.to(x.device)).abs()


def energy_distance(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> float:
    """Squared energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (minimum-image on the torus)."""
    xy = distance(x, y, periodic).mean()
    xx = distance(x, x, periodic).mean()
    yy = distance(y, y, periodic).mean()
    return float(2.0 * xy - xx - yy)
