"""A float64 brute-force periodic image sum, exact to ~1e-9 for every registered kernel.

Images with max-norm <= `shells` are summed directly.  The images beyond tile the complement of
the square d + [-L, L]^D (L = (2 shells + 1) pi) with cells of side 2 pi centred on them, so
their sum is the integral over that complement divided by (2 pi)^D minus the midpoint rule's
correction (cell^2 / 24) int Laplacian f, written as a flux through the square's boundary
(what is left is O(cell^4) and decays two powers of L faster); the integral is done in polar form, a radial
tail integral F(rho) = int_rho^inf w(r) r^(D-1) dr per direction (substitution r = rho / t,
Gauss-Legendre), and in 2-D Gauss-Legendre along each side of the square.  The first moment
k(z) z of a heavy tail (the Cauchy kernel) only converges symmetrically: its radial integral
is taken to the common radius L instead of infinity (the constant part integrates to zero
over directions).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from drift_sweeps.core.kernels import KERNELS

TWO_PI = 2.0 * math.pi


def _gl(n: int, lo: float = 0.0, hi: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    x, w = np.polynomial.legendre.leggauss(n)
    x, w = torch.from_numpy(x), torch.from_numpy(w)
    return lo + 0.5 * (hi - lo) * (x + 1.0), 0.5 * (hi - lo) * w


def _to_infinity(w, rho: torch.Tensor, dim: int) -> torch.Tensor:
    """int_rho^inf w(r) r^(dim-1) dr, elementwise in rho."""
    t, wt = _gl(32)
    r = rho.unsqueeze(-1) / t  # (..., Q)
    return (w(r) * r ** (dim - 1) * rho.unsqueeze(-1) / t**2 * wt).sum(-1)


def _between(w, rho: torch.Tensor, big: float, dim: int) -> torch.Tensor:
    """int_rho^big w(r) r^(dim-1) dr (signed), elementwise in rho."""
    t, wt = _gl(32)
    r = rho.unsqueeze(-1) + (big - rho).unsqueeze(-1) * t
    return (w(r) * r ** (dim - 1) * wt).sum(-1) * (big - rho)


def brute_sums(x: torch.Tensor, y: torch.Tensor, kernel: str, h: float, shells: int, self_pairs: bool,
               moment: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """S_i = sum_{j, n} k(z), z = x_i - y_j + 2 pi n, and G_i = sum k(z) (-z) (moment) or
    sum grad_z k(z) (otherwise); self_pairs drops j = i.  float64.  -> (N,), (N, D)."""
    kern = KERNELS.get(kernel)
    x, y = x.double(), y.double()
    n, dim = x.shape
    k_of = lambda r: torch.exp(kern.log(r, h, dim))  # noqa: E731
    dk_of = lambda r: k_of(r) * kern.dlog(r, h, dim)  # noqa: E731  dk/dr
    d = x.unsqueeze(1) - y.unsqueeze(0)  # (N, M, D)
    d = d - TWO_PI * torch.round(d / TWO_PI)
    keep = torch.ones(d.shape[:2], dtype=torch.float64)
    if self_pairs:
        keep.fill_diagonal_(0.0)
    s = torch.zeros(n, dtype=torch.float64)
    g = torch.zeros(n, dim, dtype=torch.float64)
    ints = torch.arange(-shells, shells + 1, dtype=torch.float64)
    for off in TWO_PI * torch.cartesian_prod(*([ints] * dim)).reshape(-1, dim):
        z = d + off  # (N, M, D)
        r = z.norm(dim=-1).clamp_min(1e-300)
        k = k_of(r) * keep
        s += k.sum(1)
        if moment:
            g -= (k.unsqueeze(-1) * z).sum(1)
        else:
            g += ((dk_of(r) * keep / r).unsqueeze(-1) * z).sum(1)
    big = (2 * shells + 1) * math.pi
    cell = TWO_PI**dim
    nearest = torch.tensor([big - math.pi * math.sqrt(dim)], dtype=torch.float64)
    if float(k_of(nearest)) * big**dim < 1e-16:  # nothing left beyond the shells (light tails)
        return s, g
    _flux_correction(s, g, d, keep, k_of, dk_of, lambda r: _d2k(kern, r, h, dim), big, moment)
    w_s = k_of
    w_m = lambda r: k_of(r) * r  # noqa: E731
    if dim == 1:
        for sgn in (1.0, -1.0):  # the half-line z > L + d (sgn +) or z < -(L - d) (sgn -)
            rho = big + sgn * d[..., 0]
            s += (_to_infinity(w_s, rho, 1) * keep).sum(1) / cell
            if moment:
                g[:, 0] -= sgn * (_between(w_m, rho, big, 1) * keep).sum(1) / cell
            else:
                g[:, 0] += sgn * (_to_infinity(dk_of, rho, 1) * keep).sum(1) / cell
        return s, g
    if dim != 2:
        raise ValueError("brute_sums: dim 1 or 2")
    tau, wt = _gl(32, -1.0, 1.0)
    for axis in (0, 1):
        for sgn in (1.0, -1.0):
            pos = d[..., axis] + sgn * big  # (N, M): the side's coordinate along `axis`
            other = d[..., 1 - axis]
            for q in range(tau.numel()):
                along = other + big * tau[q]  # (N, M)
                px, py = (pos, along) if axis == 0 else (along, pos)
                rho = torch.sqrt(px * px + py * py)
                dtheta = pos.abs() * big * wt[q] / (rho * rho)  # |X| d tau / rho^2
                ux, uy = px / rho, py / rho
                s += (_to_infinity(w_s, rho, 2) * dtheta * keep).sum(1) / cell
                radial = (-_between(w_m, rho, big, 2)) if moment else _to_infinity(dk_of, rho, 2)
                radial = radial * dtheta * keep
                g[:, 0] += (radial * ux).sum(1) / cell
                g[:, 1] += (radial * uy).sum(1) / cell
    return s, g


def _d2k(kern, r: torch.Tensor, h: float, dim: int) -> torch.Tensor:
    """k''(r) = k (dlog^2 + dlog'), dlog' by a central difference."""
    step = 1e-4 * r
    dlog = kern.dlog(r, h, dim)
    ddlog = (kern.dlog(r + step, h, dim) - kern.dlog(r - step, h, dim)) / (2 * step)
    return torch.exp(kern.log(r, h, dim)) * (dlog * dlog + ddlog)


def _flux_correction(s, g, d, keep, k_of, dk_of, d2k_of, big: float, moment: bool) -> None:
    """Subtract (a^2/24)/a^D int_outside Laplacian F = -(a^2/24)/a^D oint grad F . n_Q dS, a = 2 pi,
    for F = k (into s) and F = -k z or grad k (into g), n_Q the square's outward normal."""
    dim = d.shape[-1]
    coef = (TWO_PI**2 / 24.0) / TWO_PI**dim
    if dim == 1:
        nodes = [(torch.ones(()), 1.0)]
        sides = [(0, sgn) for sgn in (1.0, -1.0)]
    else:
        tau, wt = _gl(32, -1.0, 1.0)
        nodes = list(zip(tau, wt * big))
        sides = [(axis, sgn) for axis in (0, 1) for sgn in (1.0, -1.0)]
    for axis, sgn in sides:
        for tq, wq in nodes:
            z = d.clone()
            z[..., axis] = d[..., axis] + sgn * big
            if dim == 2:
                z[..., 1 - axis] = d[..., 1 - axis] + big * tq
            r = z.norm(dim=-1)
            u = z / r.unsqueeze(-1)
            un = u[..., axis] * sgn  # u . n_Q
            k, dk, d2k = k_of(r), dk_of(r), d2k_of(r)
            w = wq * keep
            # int_outside Lap F = -oint dF/dn_Q; the sum = integral - coef * int Lap F
            s += coef * ((dk * un) * w).sum(1)
            for i in range(dim):
                n_i = sgn if i == axis else 0.0
                if moment:  # F_i = -k z_i: dF_i/dn = -(k' un z_i + k n_i)
                    dfn = -(dk * un * z[..., i] + k * n_i)
                else:  # F_i = d_i k: dF_i/dn = k'' un u_i + (k'/r)(n_i - un u_i)
                    dfn = d2k * un * u[..., i] + dk / r * (n_i - un * u[..., i])
                g[:, i] += coef * (dfn * w).sum(1)


def brute_field(operator: str, x: torch.Tensor, pos: torch.Tensor, kernel: str, h: float, shells: int) -> torch.Tensor:
    """The periodic meanshift, score or mmd field with negatives = x.  float64 (N, D)."""
    moment = operator == "meanshift"
    sp, gp = brute_sums(x, pos, kernel, h, shells, False, moment)
    sq, gq = brute_sums(x, x, kernel, h, shells, True, moment)
    if operator == "mmd":
        return gp / pos.shape[0] - gq / (x.shape[0] - 1)
    v = gp / sp.unsqueeze(1) - gq / sq.unsqueeze(1)
    return h * h * v if operator == "score" else v
