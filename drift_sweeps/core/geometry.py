"""Pairwise displacements and distances on the plane R^D or the torus [0, 2pi)^D."""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch

TWO_PI = 2.0 * math.pi
_TINY = 1e-30  # keeps sqrt differentiable at zero distance (gradient 0 there)


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Map coordinates into the fundamental cell [0, 2pi)."""
    return torch.remainder(x, TWO_PI)


def minimum_image(d: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Differences d mapped to their nearest periodic image, [-pi, pi] (in place: d itself, no autograd)."""
    wraps = torch.round(d / TWO_PI).mul_(TWO_PI)
    return d.sub_(wraps) if in_place else d - wraps


def displacement(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> torch.Tensor:
    """y_j - x_i for every pair, minimum-image on the torus.  x (N, D), y (M, D) -> (N, M, D)."""
    d = y.unsqueeze(0) - x.unsqueeze(1)  # (N, M, D)
    return minimum_image(d) if periodic else d


def sq_distance(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Squared (minimum-image) Euclidean distance.  (N, D), (M, D) -> (N, M).

    Summed one coordinate at a time, as `displacement` would give them: two or three (N, M) buffers alive instead
    of the (N, M, D) displacements (spine/memory.py counts two), and 1.6x (torus, D = 2) to 2.3x (plane, D = 4)
    faster at N = M = 4096 on one thread.  In place unless autograd needs the intermediates."""
    grad = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    out = None
    for k in range(x.shape[-1]):
        d = y[:, k].unsqueeze(0) - x[:, k].unsqueeze(1)  # (N, M)
        if periodic:
            d = minimum_image(d, in_place=not grad)
        d = d.square() if grad else d.square_()
        out = d if out is None else (out + d if grad else out.add_(d))
    assert out is not None, "points of dimension 0"
    return out


def distance(x: torch.Tensor, y: torch.Tensor, periodic: bool) -> torch.Tensor:
    """Euclidean (minimum-image) distance, safe to differentiate at 0.  -> (N, M)."""
    return sq_distance(x, y, periodic).clamp_min(_TINY).sqrt()


def image_offsets(dim: int, shells: int, device: torch.device | None = None) -> torch.Tensor:
    """Lattice offsets 2pi*n for n in {-shells..shells}^dim.  -> (I, D), I = (2 shells + 1)^dim."""
    r = torch.arange(-shells, shells + 1, dtype=torch.float32, device=device)
    return TWO_PI * torch.cartesian_prod(*([r] * dim)).reshape(-1, dim)


PERIODIC_TOL = 1e-7  # image sums stop when the kernel's remaining images sum below this share of k(0)
MAX_IMAGES = 289  # streaming/dense image budget: (2 shells + 1)^dim <= this (17 x 17 in 2-D)
_TAIL_HEAD = 1024  # image_tails: shells summed first (a light tail has underflowed by then)


@functools.lru_cache(maxsize=8)
def _shell_geometry(last: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shells m = 1..last: the nearest image's distance (2m - 1) pi and the images in the shell,
    (2m + 1)^dim - (2m - 1)^dim (the same for every kernel and bandwidth: kept)."""
    m = torch.arange(1, last + 1, dtype=torch.float64)
    return (2 * m - 1) * math.pi, (2 * m + 1) ** dim - (2 * m - 1) ** dim


def image_tails(log_kernel_at: Callable[[torch.Tensor], torch.Tensor], dim: int, shells: int,
                horizon: int = 100000) -> list[float]:
    """Upper bounds on sum_{|n|_inf > s} k(d + 2 pi n) / k(0) for any d in the cell, for s = 0..shells,
    from one evaluation of the kernel (an annealed schedule asks at every step).

    An image in shell m (max-norm m) is at least (2m - 1) pi away; shell m holds
    (2m + 1)^dim - (2m - 1)^dim images.  `log_kernel_at` maps float64 distances to log k.
    The sums run to `horizon` shells, plus the last term times horizon (a bound for tails
    decaying at least like m^-2 per shell).
    """
    def terms_to(last: int) -> torch.Tensor:
        nearest, images = _shell_geometry(last, dim)
        log_k = log_kernel_at(nearest.clone()) - log_kernel_at(torch.zeros(1, dtype=torch.float64))
        return images * torch.exp(log_k)

    # the kernels decrease with distance: once a shell's term underflows to 0 every later one does,
    # so a light tail is summed over its first shells only
    terms = terms_to(min(horizon, shells + _TAIL_HEAD))
    beyond = 0.0
    if not (terms.numel() and shells + _TAIL_HEAD < horizon and float(terms[-1]) == 0.0):
        terms = terms_to(horizon)
        beyond = float(terms[-1]) * horizon if terms.numel() else 0.0
    last = float(terms[shells:].sum()) + beyond  # the shells beyond `shells`
    nearer = terms[:shells].flip(0).cumsum(0).flip(0).tolist()  # nearer[s]: shells s + 1 .. `shells`
    return [x + last for x in nearer] + [last]


def periodic_shells(log_kernel_at: Callable[[torch.Tensor], torch.Tensor], dim: int = 1,
                    tol: float = PERIODIC_TOL, max_images: int = MAX_IMAGES) -> tuple[int, float]:
    """Image shells beyond the minimum image so that the images left out sum below `tol` k(0).

    A wide kernel truncated at the minimum image is no longer the periodisation of the
    kernel, and its per-mode rates differ from the linear theory (even change sign for the
    Laplacian at h = 1); summing the images restores the exact periodic kernel.  Heavy tails
    (the Cauchy kernel: k ~ r^-(dim+1)) may need more than `max_images` images; then the
    budget's shells are returned with the tail they leave, which the caller reports.
    -> (shells, tail bound).
    """
    max_shells = max(0, int((max_images ** (1.0 / dim) - 1) // 2))
    tails = image_tails(log_kernel_at, dim, max_shells)
    shells = next((s for s, tail in enumerate(tails) if tail <= tol), max_shells)  # the tails decrease with s
    return shells, tails[shells]
