"""The 2026 kernels (Matern 3/2, Matern 5/2, the rational quadratic family) against closed forms and
numerical transforms, and their per-mode rates on the 1-D and 2-D torus against the linear theory.

Rates: particles placed at the quantiles along the first axis (tests/core/helpers.py), data the uniform
grid; the negatives are the particles themselves *without* the self-pair mask, so every sum over the
particles is a Riemann sum of the population integral (the mask leaves one cell out of the repulsion,
a bias of k(0) / sum_j k(x, x_j): ~4% for a 24 x 24 lattice at h = 0.5, which would hide a wrong rate).
The streaming backend keeps these small systems fast (the spectral one is checked in test_spectral.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.kernels import KERNELS, log_kernel, rational_quadratic, resolve
from drift_sweeps.core.operators import drift
from drift_sweeps.spine import theory
from drift_sweeps.spine.config import ConfigError, TrialConfig

from .helpers import quantile_particles, simulate_meanshift, uniform_grid

NEW = ["matern32", "matern52", "rational_quadratic"]
# (kernel, shape): every family member the transforms are checked for
MEMBERS = [("matern32", None), ("matern52", None), ("rational_quadratic", 2.0), ("rational_quadratic", 3.5),
           ("rational_quadratic", 1.5)]


def test_bessel_k_matches_scipy() -> None:
    worst = 0.0
    for nu in (0.0, 0.1, 0.5, 1.0, 1.5, 2.7, 6.0, 12.0, 30.0):
        for x in [10.0**e for e in range(-8, 3)] + [0.3, 3.7, 40.0, 300.0, 700.0]:
            ref = float(special.kv(nu, x))
            if ref == 0.0 or not math.isfinite(ref):
                continue
            worst = max(worst, abs(theory.bessel_k(nu, x) - ref) / ref)
    print(f"bessel_k: worst relative error against scipy.special.kv {worst:.1e}")
    assert worst < 1e-12


def _kernel(name: str, shape, r: np.ndarray, dim: int) -> np.ndarray:
    entry = resolve(name, theory.DEFAULT_SHAPE if shape is None else shape)
    return torch.exp(entry.log(torch.from_numpy(r), 1.0, dim)).numpy()


@pytest.mark.parametrize("name,shape", MEMBERS)
def test_spectrum_matches_numerical_fourier_transform(name: str, shape) -> None:
    """kappa(s, 1): the cosine transform; kappa(s, 2): the radial Hankel transform 2 pi int k J0(s r) r dr; both
    normalised by the integral, which must equal Kernel.mass."""
    sp = theory.spectral(name, shape)
    mass = resolve(name, theory.DEFAULT_SHAPE if shape is None else shape).mass
    r = np.linspace(0.0, 600.0, 1_200_001)
    for dim in (1, 2):
        if shape is not None and shape - dim / 2 < 1.0:
            continue  # tails r^-(2 alpha - dim + 1) too heavy for the truncated quadrature (Cauchy: its own test)
        k = _kernel(name, shape, r, dim)
        weight = 2.0 * np.ones_like(r) if dim == 1 else 2.0 * np.pi * r
        total = integrate.trapezoid(k * weight, r)
        assert total == pytest.approx(mass(dim), rel=2e-4)
        for s in (0.3, 1.0, 2.0, 4.0):
            basis = np.cos(s * r) if dim == 1 else special.j0(s * r)
            ft = integrate.trapezoid(k * weight * basis, r) / total
            assert ft == pytest.approx(sp.kappa(s, dim), abs=2e-4), (dim, s)


@pytest.mark.parametrize("name,shape", MEMBERS)
def test_decay_is_minus_s_kappa_prime(name: str, shape) -> None:
    sp = theory.spectral(name, shape)
    for dim in (1, 2, 3):
        if shape is not None and shape <= dim / 2:
            with pytest.raises(ValueError, match="dim/2"):
                sp.kappa(1.0, dim)
            continue
        assert sp.kappa(0.0, dim) == 1.0 and sp.decay(0.0, dim) == 0.0
        for s in (1e-3, 0.2, 1.0, 3.0, 9.0):
            d = 1e-6 * max(s, 1.0)
            slope = (sp.kappa(s + d, dim) - sp.kappa(s - d, dim)) / (2 * d)
            assert sp.decay(s, dim) == pytest.approx(-s * slope, rel=1e-6, abs=1e-9)


def test_rational_quadratic_contains_the_cauchy_kernel() -> None:
    r = torch.linspace(0.0, 20.0, 201, dtype=torch.float64)
    for dim in (1, 2, 3):
        alpha = (dim + 1) / 2
        assert torch.allclose(log_kernel("rational_quadratic", r, 0.7, dim, alpha), log_kernel("cauchy", r, 0.7, dim))
        for s in (0.1, 1.0, 5.0):
            assert theory.spectral("rational_quadratic", alpha).kappa(s, dim) == pytest.approx(math.exp(-s), rel=1e-12)
        assert rational_quadratic(alpha).mass(dim) == pytest.approx(KERNELS.get("cauchy").mass(dim), rel=1e-12)


@pytest.mark.parametrize("name,shape", MEMBERS + [(n, None) for n in ("gaussian", "laplacian", "cauchy")])
def test_dlog_weight_and_sharp_kernel_against_autograd(name: str, shape) -> None:
    """dlog = d log k / dr, the fast forms agree with log/dlog, and d k#/dr = -r k / h^2 with k#(inf) = 0."""
    entry = resolve(name, theory.DEFAULT_SHAPE if shape is None else shape)
    h, dim = 0.8, 2
    r = torch.linspace(0.05, 12.0, 300, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(entry.log(r, h, dim).sum(), r)
    rd = r.detach()
    assert torch.allclose(entry.dlog(rd.clone(), h, dim), g, rtol=1e-10, atol=1e-12)
    assert torch.allclose(entry.log_from_sq_(rd.square(), h, dim), entry.log(rd, h, dim), rtol=1e-10, atol=1e-12)
    w = entry.weight_from_sq_(rd.square(), h, dim)
    assert torch.allclose(torch.as_tensor(w, dtype=torch.float64).expand_as(rd), -g / rd, rtol=1e-10)
    sharp = entry.sharp_kernel()
    (gs,) = torch.autograd.grad(sharp.log(r, h, dim).exp().sum(), r)
    assert torch.allclose(gs, -rd * entry.log(rd, h, dim).exp() / h**2, rtol=1e-9, atol=1e-14)
    assert torch.allclose(sharp.dlog(rd, h, dim), gs / sharp.log(rd, h, dim).exp(), rtol=1e-9)
    def integrand(s: float) -> float:
        return s * math.exp(float(entry.log(torch.tensor(s, dtype=torch.float64), h, dim)))

    for r0 in (0.0, 1.0, 3.0):  # k#(r0) = h^-2 int_r0^inf s k(s) ds
        near, _ = integrate.quad(integrand, r0, r0 + 40.0, epsabs=0.0, epsrel=1e-12, limit=200)
        far, _ = integrate.quad(integrand, r0 + 40.0, np.inf, epsabs=0.0, epsrel=1e-10, limit=200)
        tail = near + far
        assert math.exp(float(sharp.log(torch.tensor(r0, dtype=torch.float64), h, dim))) == pytest.approx(
            tail / h**2, rel=1e-9)


def test_shape_reaches_the_operators_and_is_validated() -> None:
    g = torch.Generator().manual_seed(0)
    x, pos = torch.rand(30, 2, generator=g, dtype=torch.float64), torch.rand(40, 2, generator=g, dtype=torch.float64)
    for periodic in (False, True):
        scale = 2 * math.pi if periodic else 1.0
        for backend in ("dense", "stream"):
            rq = FieldSpec("rational_quadratic", 0.6, periodic, kernel_shape=1.5, backend=backend)
            ca = FieldSpec("cauchy", 0.6, periodic, backend=backend)
            assert torch.allclose(drift("meanshift", x * scale, pos * scale, x * scale, rq),
                                  drift("meanshift", x * scale, pos * scale, x * scale, ca), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="dim/2"):  # not integrable in 2-D: no periodisation
        FieldSpec("rational_quadratic", 0.6, True, kernel_shape=0.9).shells(0.6, 2)
    with pytest.raises(ConfigError, match="kernel_shape"):
        TrialConfig.from_dict({"kernel": "rational_quadratic", "target": "torus2d", "kernel_shape": 1.0})
    with pytest.raises(ConfigError, match="kernel_shape"):
        TrialConfig.from_dict({"kernel_shape": 0.0})
    assert TrialConfig.from_dict({"kernel": "rational_quadratic", "target": "torus1d", "kernel_shape": 0.75})


def _assert_rates(traj: list[list[complex]], kernel: str, h: float, ks: list[int], dt: float, dim: int,
                  shape=None) -> None:
    """Each mode's mean per-step decay within 5% of lambda_dim(k) (test_linear_theory's rule, with a shape)."""
    steps = len(traj) - 1
    for i, k in enumerate(ks):
        measured = (1.0 - (abs(traj[-1][i]) / abs(traj[0][i])) ** (1.0 / steps)) / dt
        predicted = theory.decay_rate(kernel, k, h, dim, shape)
        rel = abs(measured - predicted) / predicted
        print(f"{dim}-D {kernel} (shape {shape}) h={h} k={k}: measured {measured:.4f} predicted {predicted:.4f} "
              f"rel.err {rel:.2%}")
        assert rel < 0.05, (dim, kernel, h, k, measured, predicted)


def _lattice_2d(ks: list[int], nx: int, ny: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x-modes (k, 0) on an nx x ny lattice, quantile-placed along x; data the uniform nx x ny grid."""
    xs = quantile_particles(nx, {k: 0.01 for k in ks})[:, 0]
    ys = uniform_grid(ny)[:, 0]
    return torch.cartesian_prod(xs, ys), torch.cartesian_prod(uniform_grid(nx)[:, 0], ys)  # (nx ny, 2) each


@pytest.mark.parametrize("kernel", NEW)
def test_rates_match_the_linear_theory_1d(kernel: str) -> None:
    ks, h, dt, steps, n = [1, 2, 4, 8], 0.5, 0.25, 12, 240
    x, y = quantile_particles(n, {k: 0.01 for k in ks}), uniform_grid(n)
    traj = simulate_meanshift(x, y, FieldSpec(kernel, h, periodic=True, neg_is_x=False, backend="stream"), ks, dt, steps)
    _assert_rates(traj, kernel, h, ks, dt, dim=1)


@pytest.mark.parametrize("kernel,shape,h", [("matern32", None, 0.5), ("matern52", None, 0.5),
                                           ("rational_quadratic", 3.5, 0.75)])
def test_rates_match_the_linear_theory_2d(kernel: str, shape, h: float) -> None:
    """alpha = 3.5 (not the default 2) for the rational quadratic: the shape reaches the field and the theory,
    and its r^-7 tail needs 2 image shells (alpha = 2: the whole budget of 8, ~30 s more).  Its transform decays
    only like e^-s, so the lattice's aliases (at s = 16 h along y) need the wider h = 0.75 to stay below 1e-4."""
    ks, dt, steps = [1, 2, 4], 0.25, 12
    x, y = _lattice_2d(ks, 24, 16)
    field = FieldSpec(kernel, h, periodic=True, neg_is_x=False, kernel_shape=shape or theory.DEFAULT_SHAPE,
                      backend="stream")
    _assert_rates(simulate_meanshift(x, y, field, ks, dt, steps), kernel, h, ks, dt, dim=2, shape=shape)
