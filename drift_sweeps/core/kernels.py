"""Radial kernels as log k(distance; bandwidth, dim), one registry, one signature.

Every kernel is written as a log-kernel so that operators can use numerically stable
log-sum-exp normalisations.  Signature: ``log_kernel(dist, bandwidth, dim) -> Tensor`` with
`dist` the unsquared (minimum-image) distance, shape preserved.  The Fourier transforms used
by the linear theory live in `theory.py` (torch-free) under the same names.
"""

from __future__ import annotations

from typing import Callable

import torch

from .registry import Registry

LogKernel = Callable[[torch.Tensor, float, int], torch.Tensor]
KERNELS: Registry[LogKernel] = Registry("kernel")


@KERNELS.register("gaussian")
def gaussian(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log exp(-d^2 / 2h^2)."""
    return -0.5 * (dist / bandwidth).square()


@KERNELS.register("laplacian")
def laplacian(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log exp(-d / h) on the unsquared distance (the original drifting paper's kernel)."""
    return -dist / bandwidth


@KERNELS.register("cauchy")
def cauchy(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log (1 + d^2/h^2)^(-(dim+1)/2): the multivariate Cauchy (Poisson) kernel.

    Its normalised Fourier transform is exp(-|k| h) in every dimension, between the
    Gaussian's exp(-s^2/2) and the Laplacian's algebraic tail.
    """
    return -0.5 * (dim + 1) * torch.log1p((dist / bandwidth).square())


def log_kernel(name: str, dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """Evaluate the registered kernel `name`."""
    return KERNELS.get(name)(dist, bandwidth, dim)
