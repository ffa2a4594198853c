"""Pairwise displacements and distances on the plane R^D or the torus [0, 2pi)^D."""

from __future__ import annotations

import math

import torch

TWO_PI = 2.0 * math.pi
_TINY = 1e-30  # keeps sqrt differentiable at zero distance (gradient 0 there)


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Map coordinates into the fundamental cell [0, 2pi)."""
    return torch.remainder(x, TWO_PI)


def displacement(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> torch.Tensor:
    """y_j - x_i for every pair, minimum-image on the torus.  x (N, D), y (M, D) -> (N, M, D)."""
    d = y.unsqueeze(0) - x.unsqueeze(1)  # (N, M, D)
    if periodic:
        d = d - TWO_PI * torch.round(d / TWO_PI)
    return d


def sq_distance(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Squared (minimum-image) Euclidean distance.  (N, D), (M, D) -> (N, M)."""
    return displacement(x, y, periodic).square().sum(-1)


def distance(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Euclidean (minimum-image) distance, safe to differentiate at 0.  -> (N, M)."""
    return sq_distance(x, y, periodic).clamp_min(_TINY).sqrt()


def image_offsets(dim: int, shells: int, device: torch.device | None = None) -> torch.Tensor:
    """Lattice offsets 2pi*n for n in {-shells..shells}^dim.  -> (I, D), I = (2 shells + 1)^dim."""
    r = torch.arange(-shells, shells + 1, dtype=torch.float32, device=device)
    return TWO_PI * torch.cartesian_prod(*([r] * dim)).reshape(-1, dim)


def periodic_shells(log_kernel_at: "callable", tol: float = 1e-4, max_shells: int = 3) -> int:
    """Image shells beyond the minimum image needed before the kernel drops below `tol`.

    A wide kernel truncated at the minimum image is no longer the periodisation of the
    kernel, and its per-mode rates differ from the linear theory (even change sign for the
    Laplacian at h = 1); summing the images restores the exact periodic kernel.
    `log_kernel_at(d)` gives log k at a plain float distance d.
    """
    s = 0
    while s < max_shells and log_kernel_at((2 * s + 1) * math.pi) > math.log(tol):
        s += 1
    return s
