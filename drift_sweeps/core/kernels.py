"""Radial kernels, one registry: a new kernel is one `Kernel` entry.

Every kernel is written as a log-kernel so that operators can use numerically stable
log-sum-exp normalisations.  An entry is called like the log-kernel itself,
``KERNELS.get(name)(dist, bandwidth, dim) -> Tensor`` with `dist` the unsquared
(minimum-image) distance, shape preserved; it also carries the radial derivative
d log k / d dist (closed-form gradients for the streaming score and MMD operators) and,
optionally, a fast in-place form on squared distances (the streaming operators' inner loop).
The Fourier transforms used by the linear theory live in `theory.py` (torch-free) under the
same names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from ..spine.registry import Registry

LogKernel = Callable[[torch.Tensor, float, int], torch.Tensor]


@dataclass(frozen=True)
class Kernel:
    """One radial kernel: log k(dist), its radial derivative, and an optional fast form.

    log(dist, h, dim)      log k; differentiable torch code, the reference form.
    dlog(dist, h, dim)     d log k / d dist (the gradient of log k(|x - y|) in x is
                           -dlog(r)/r * (y - x)).
    log_sq_(sq, h, dim)    optional: log k from squared distances, allowed to overwrite `sq`
                           (no autograd); defaults to log(sqrt(sq)).
    weight_sq_(w, h, dim)  optional: the gradient weight -dlog(r)/r from squared distances,
                           written over `w` (which holds them); or a float when the weight is
                           constant (the Gaussian's 1/h^2).  Defaults to dlog.
    mass(dim)              optional: int_{R^dim} k(|x|) dx at bandwidth 1 (h^dim times it at h).
                           With the normalised transform kappa of `theory.SPECTRA` (same name)
                           it gives the Fourier series of the periodic kernel, so a kernel with
                           both gets the spectral torus backend (`spectral.py`) from this entry.
    The streaming operators' fast pass exponentiates log k without a shift, so it is fastest
    when log k(0) is near 0 (k(0) = 1, as for every entry here); rows where that under- or
    overflows are redone by an exact (max-shifted) pass, so other kernels are still exact.
    """

    log: LogKernel
    dlog: LogKernel
    log_sq_: Optional[LogKernel] = None
    weight_sq_: Optional[Callable[[torch.Tensor, float, int], Union[torch.Tensor, float]]] = None
    mass: Optional[Callable[[int], float]] = None

    def __call__(self, dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
        return self.log(dist, bandwidth, dim)

    def weight_from_sq_(self, w: torch.Tensor, bandwidth: float, dim: int) -> Union[torch.Tensor, float]:
        """-dlog(r)/r from squared distances held in `w` (overwritten), or a constant float."""
        if self.weight_sq_ is not None:
            return self.weight_sq_(w, bandwidth, dim)
        r = w.sqrt_().clamp_min_(1e-15)
        return self.dlog(r, bandwidth, dim).div_(r).neg_()

    def log_from_sq_(self, sq: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
        """log k from squared distances; may overwrite and return `sq`."""
        if self.log_sq_ is not None:
            return self.log_sq_(sq, bandwidth, dim)
        return self.log(sq.sqrt_(), bandwidth, dim)


KERNELS: Registry[Kernel] = Registry("kernel")


def gaussian(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log exp(-d^2 / 2h^2)."""
    return -0.5 * (dist / bandwidth).square()


def laplacian(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log exp(-d / h) on the unsquared distance (the original drifting paper's kernel)."""
    return -dist / bandwidth


def cauchy(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log (1 + d^2/h^2)^(-(dim+1)/2): the multivariate Cauchy (Poisson) kernel.

    Its normalised Fourier transform is exp(-|k| h) in every dimension, between the
    Gaussian's exp(-s^2/2) and the Laplacian's algebraic tail.
    """
    return -0.5 * (dim + 1) * torch.log1p((dist / bandwidth).square())


KERNELS.add("gaussian", Kernel(
    log=gaussian,
    dlog=lambda r, h, dim: -r / (h * h),
    log_sq_=lambda sq, h, dim: sq.mul_(-0.5 / (h * h)),
    weight_sq_=lambda w, h, dim: 1.0 / (h * h),
    mass=lambda dim: (2.0 * math.pi) ** (dim / 2.0),
))
KERNELS.add("laplacian", Kernel(
    log=laplacian,
    dlog=lambda r, h, dim: torch.full_like(r, -1.0 / h),
    log_sq_=lambda sq, h, dim: sq.sqrt_().mul_(-1.0 / h),
    weight_sq_=lambda w, h, dim: w.sqrt_().clamp_min_(1e-15).reciprocal_().mul_(1.0 / h),
    mass=lambda dim: 2.0 * math.pi ** (dim / 2.0) * math.gamma(dim) / math.gamma(dim / 2.0),
))
KERNELS.add("cauchy", Kernel(
    log=cauchy,
    dlog=lambda r, h, dim: r.square().add_(h * h).reciprocal_().mul_(r).mul_(-(dim + 1)),
    log_sq_=lambda sq, h, dim: sq.mul_(1.0 / (h * h)).log1p_().mul_(-0.5 * (dim + 1)),
    weight_sq_=lambda w, h, dim: w.add_(h * h).reciprocal_().mul_(dim + 1),
    mass=lambda dim: math.pi ** ((dim + 1) / 2.0) / math.gamma((dim + 1) / 2.0),
))


def log_kernel(name: str, dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """Evaluate the registered kernel `name`."""
    return KERNELS.get(name)(dist, bandwidth, dim)
