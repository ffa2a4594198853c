"""Radial kernels, one registry: a new kernel is one `Kernel` entry.

Every kernel is written as a log-kernel so that operators can use numerically stable
log-sum-exp normalisations.  An entry is called like the log-kernel itself,
``KERNELS.get(name)(dist, bandwidth, dim) -> Tensor`` with `dist` the unsquared
(minimum-image) distance, shape preserved; it also carries the radial derivative
d log k / d dist (closed-form gradients for the streaming score and MMD operators) and,
optionally, a fast in-place form on squared distances (the streaming operators' inner loop).
The Fourier transforms used by the linear theory live in `theory.py` (torch-free) under the
same names.

Kernel families with a shape (the rational quadratic's alpha) keep the one signature
log(dist, h, dim): the registered entry is the member at `theory.DEFAULT_SHAPE` and carries
`shaped(alpha) -> Kernel`, the member with another shape; `FieldSpec.kernel_shape` carries alpha
and every operator gets its kernel from `resolve(name, shape)` (`FieldSpec.kernel_entry`).  This
keeps every kernel a plain function of (dist, h, dim) and every registry keyed by name, at the
price of one resolve per operator call.  The registered family entry has no `mass`, so the
spectral torus backend, which looks kernels up by name, never meets a family member whose
shape it would not know (it streams them instead); members from `resolve` carry their mass.

`sharp` is the log of the sharp kernel k#(r) = h^-2 int_r^inf s k(s) ds of "Drifting Fields are
not Conservative" (arXiv 2604.06333), the radial potential whose gradient is the kernel-weighted
displacement: grad_x k#(|x - y|) = h^-2 k(|x - y|) (y - x).  The Gaussian is its own sharp
kernel; the sharp kernel of the Laplacian is (1 + r/h) e^(-r/h), and of Matern nu the Matern
nu + 1 polynomial with the same decay rate.  It exists when int r k(r) dr converges (not for the
1-D Cauchy kernel, nor for the rational quadratic with alpha <= 1).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch

from ..spine.registry import Registry
from ..spine.theory import DEFAULT_SHAPE

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
    sharp(dist, h, dim)    optional: log k#, the sharp kernel (module docstring); may raise
                           ValueError where k# does not exist.
    shaped(alpha)          optional: a family's member with shape alpha (module docstring).
    exp_poly               optional: (lam, (a_0, a_1, ...)) when k(r) = exp(-lam r) sum_i a_i r^i at
                           bandwidth 1 (r / h at h): then the 1-D torus sums are exact prefix sums
                           over the sorted samples (expscan.py), O((N + M) log M).
    The streaming operators' fast pass exponentiates log k without a shift, so it is fastest
    when log k(0) is near 0 (k(0) = 1, as for every entry here); rows where that under- or
    overflows are redone by an exact (max-shifted) pass, so other kernels are still exact.
    """

    log: LogKernel
    dlog: LogKernel
    log_sq_: Optional[LogKernel] = None
    weight_sq_: Optional[Callable[[torch.Tensor, float, int], Union[torch.Tensor, float]]] = None
    mass: Optional[Callable[[int], float]] = None
    sharp: Optional[LogKernel] = None
    shaped: Optional[Callable[[float], "Kernel"]] = None
    exp_poly: Optional[tuple[float, tuple[float, ...]]] = None

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

    def with_shape(self, shape: float) -> "Kernel":
        """The member with shape `shape` of a family; the kernel itself otherwise."""
        return self if self.shaped is None else self.shaped(shape)

    def sharp_kernel(self) -> "Kernel":
        """The sharp kernel k# as a Kernel (log = self.sharp); ValueError when it has none."""
        if self.sharp is None:
            raise ValueError("this kernel has no sharp kernel (normalization = 'sharp')")
        sharp, log = self.sharp, self.log

        def dlog(r: torch.Tensor, h: float, dim: int) -> torch.Tensor:
            return -(r / (h * h)) * torch.exp(log(r, h, dim) - sharp(r, h, dim))  # k#' = -r k / h^2

        return Kernel(log=sharp, dlog=dlog)


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


def _sharp_cauchy(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log k# of the Cauchy kernel: (1 + d^2/h^2)^(1-b) / (2 (b-1)), b = (dim+1)/2; none in 1-D."""
    b = 0.5 * (dim + 1)
    if b <= 1.0:
        raise ValueError("the 1-D Cauchy kernel has no sharp kernel: int r k(r) dr diverges (normalization = 'sharp')")
    return (1.0 - b) * torch.log1p((dist / bandwidth).square()) - math.log(2.0 * (b - 1.0))


KERNELS.add("gaussian", Kernel(
    log=gaussian,
    dlog=lambda r, h, dim: -r / (h * h),
    log_sq_=lambda sq, h, dim: sq.mul_(-0.5 / (h * h)),
    weight_sq_=lambda w, h, dim: 1.0 / (h * h),
    mass=lambda dim: (2.0 * math.pi) ** (dim / 2.0),
    sharp=gaussian,  # its own sharp kernel: the reason its mean-shift field is a gradient
))
KERNELS.add("laplacian", Kernel(
    log=laplacian,
    dlog=lambda r, h, dim: torch.full_like(r, -1.0 / h),
    log_sq_=lambda sq, h, dim: sq.sqrt_().mul_(-1.0 / h),
    weight_sq_=lambda w, h, dim: w.sqrt_().clamp_min_(1e-15).reciprocal_().mul_(1.0 / h),
    mass=lambda dim: 2.0 * math.pi ** (dim / 2.0) * math.gamma(dim) / math.gamma(dim / 2.0),
    sharp=lambda r, h, dim: torch.log1p(r / h) - r / h,  # (1 + r/h) e^(-r/h)
    exp_poly=(1.0, (1.0,)),
))
KERNELS.add("cauchy", Kernel(
    log=cauchy,
    dlog=lambda r, h, dim: r.square().add_(h * h).reciprocal_().mul_(r).mul_(-(dim + 1)),
    log_sq_=lambda sq, h, dim: sq.mul_(1.0 / (h * h)).log1p_().mul_(-0.5 * (dim + 1)),
    weight_sq_=lambda w, h, dim: w.add_(h * h).reciprocal_().mul_(dim + 1),
    mass=lambda dim: math.pi ** ((dim + 1) / 2.0) / math.gamma((dim + 1) / 2.0),
    sharp=_sharp_cauchy,
))


def matern_mass(nu: float, dim: int) -> float:
    """int_{R^dim} of the Matern kernel of smoothness nu at length 1: (2 pi / nu)^(dim/2) Gamma(nu + dim/2) / Gamma(nu)."""
    return (2.0 * math.pi / nu) ** (dim / 2.0) * math.gamma(nu + dim / 2.0) / math.gamma(nu)


def matern32(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log (1 + u) e^-u, u = sqrt(3) d / h: Matern nu = 3/2 with length h, kappa(s) = (1 + s^2/3)^-(3/2 + dim/2)."""
    u = dist * (math.sqrt(3.0) / bandwidth)
    return torch.log1p(u) - u


def matern52(dist: torch.Tensor, bandwidth: float, dim: int) -> torch.Tensor:
    """log (1 + u + u^2/3) e^-u, u = sqrt(5) d / h: Matern nu = 5/2 with length h, kappa(s) = (1 + s^2/5)^-(5/2 + dim/2)."""
    u = dist * (math.sqrt(5.0) / bandwidth)
    return torch.log1p(u * (1.0 + u / 3.0)) - u


def _log_sq_matern32(sq: torch.Tensor, h: float, dim: int) -> torch.Tensor:
    u = sq.sqrt_().mul_(math.sqrt(3.0) / h)
    return torch.log1p(u).sub_(u)


def _weight_matern52(r: torch.Tensor, h: float) -> torch.Tensor:
    """-dlog(r)/r = (a^2/3) (1 + u) / (1 + u + u^2/3), u = a r, a = sqrt(5)/h."""
    u = r * (math.sqrt(5.0) / h)
    return (1.0 + u).div_(u * (1.0 + u / 3.0) + 1.0).mul_(5.0 / (3.0 * h * h))


KERNELS.add("matern32", Kernel(
    log=matern32,
    dlog=lambda r, h, dim: (r * (3.0 / (h * h))).div_(r * (math.sqrt(3.0) / h) + 1.0).neg_(),  # -a^2 r / (1 + a r)
    log_sq_=_log_sq_matern32,
    weight_sq_=lambda w, h, dim: w.sqrt_().mul_(math.sqrt(3.0) / h).add_(1.0).reciprocal_().mul_(3.0 / (h * h)),
    mass=lambda dim: matern_mass(1.5, dim),
    sharp=lambda r, h, dim: matern52(r * math.sqrt(3.0 / 5.0), h, dim),  # (1 + u + u^2/3) e^-u, same u
    exp_poly=(math.sqrt(3.0), (1.0, math.sqrt(3.0))),
))
KERNELS.add("matern52", Kernel(
    log=matern52,
    dlog=lambda r, h, dim: -r * _weight_matern52(r, h),
    weight_sq_=lambda w, h, dim: _weight_matern52(w.sqrt_(), h),
    mass=lambda dim: matern_mass(2.5, dim),
    # (1 + u + 2u^2/5 + u^3/15) e^-u, the Matern-7/2 polynomial with the same u
    sharp=lambda r, h, dim: (lambda u: torch.log1p(u * (1.0 + u * (0.4 + u / 15.0))) - u)(r * (math.sqrt(5.0) / h)),
    exp_poly=(math.sqrt(5.0), (1.0, math.sqrt(5.0), 5.0 / 3.0)),
))


def _check_alpha(alpha: float, dim: int) -> None:
    if alpha <= 0.5 * dim:
        raise ValueError(f"kernel 'rational_quadratic': kernel_shape alpha = {alpha} must be > dim/2 = {0.5 * dim} "
                         f"here: (1 + r^2/h^2)^-alpha is not integrable in {dim} dimensions, so it has no mass, no "
                         "Fourier transform and no periodisation (torus)")


@functools.lru_cache(maxsize=64)
def rational_quadratic(alpha: float) -> Kernel:
    """k = (1 + d^2/h^2)^-alpha, alpha > 0 (the Cauchy kernel is alpha = (dim+1)/2).

    alpha is the family's shape (`FieldSpec.kernel_shape`); the normalised transform is the Matern
    correlation of order alpha - dim/2 (theory.rational_quadratic).  What needs the kernel to be
    integrable (mass, transform, the torus's image sum: `FieldSpec.shells` calls `mass`) raises a
    ValueError for alpha <= dim/2; on the plane the kernel weights of finite samples are defined
    for every alpha > 0 (a scale mixture of Gaussians, so still positive definite), and allowed.
    Its sharp kernel is (1 + d^2/h^2)^(1-alpha) / (2 (alpha - 1)), alpha > 1.
    """
    alpha = float(alpha)

    def log(dist: torch.Tensor, h: float, dim: int) -> torch.Tensor:
        return -alpha * torch.log1p((dist / h).square())

    def mass(dim: int) -> float:
        _check_alpha(alpha, dim)
        return math.pi ** (dim / 2.0) * math.gamma(alpha - dim / 2.0) / math.gamma(alpha)

    def log_sq_(sq: torch.Tensor, h: float, dim: int) -> torch.Tensor:
        return sq.mul_(1.0 / (h * h)).log1p_().mul_(-alpha)

    def sharp(dist: torch.Tensor, h: float, dim: int) -> torch.Tensor:
        if alpha <= 1.0:
            raise ValueError(f"kernel 'rational_quadratic' with alpha = {alpha} <= 1 has no sharp kernel: "
                             "int r k(r) dr diverges (normalization = 'sharp')")
        return (1.0 - alpha) * torch.log1p((dist / h).square()) - math.log(2.0 * (alpha - 1.0))

    return Kernel(
        log=log,
        dlog=lambda r, h, dim: r.square().add_(h * h).reciprocal_().mul_(r).mul_(-2.0 * alpha),
        log_sq_=log_sq_,
        weight_sq_=lambda w, h, dim: w.add_(h * h).reciprocal_().mul_(2.0 * alpha),
        mass=mass,
        sharp=sharp,
        shaped=rational_quadratic,
    )


# the registered member (DEFAULT_SHAPE) has no mass: the spectral backend knows kernels by name only
KERNELS.add("rational_quadratic", dataclasses.replace(rational_quadratic(DEFAULT_SHAPE), mass=None))


@functools.lru_cache(maxsize=256)
def resolve(name: str, shape: float = DEFAULT_SHAPE) -> Kernel:
    """The kernel `name`, at shape `shape` when it is a family (other kernels ignore the shape)."""
    entry = KERNELS.get(name)
    return entry if entry.shaped is None else entry.shaped(float(shape))


def log_kernel(name: str, dist: torch.Tensor, bandwidth: float, dim: int, shape: float = DEFAULT_SHAPE) -> torch.Tensor:
    """Evaluate the registered kernel `name` (at `shape` for a family)."""
    return resolve(name, shape)(dist, bandwidth, dim)
