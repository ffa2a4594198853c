"""One contract suite per registry, parametrised over every registered entry.

A new kernel, operator, schedule or target is tested here the moment it is registered.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drift_sweeps.spine import theory
from drift_sweeps.core.kernels import KERNELS, log_kernel
from drift_sweeps.core.metrics import empirical_fourier, frequencies
from drift_sweeps.spine.record import noise_floor
from drift_sweeps.core.operators import OPERATORS, FieldSpec, drift
from drift_sweeps.spine.schedules import SCHEDULES, bandwidth_at
from drift_sweeps.core.catalog import TARGETS, make_target
from drift_sweeps.core.targets import TargetSpec


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("data") / "points.npy"
    np.save(path, np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32))
    return str(path)


def _target(name: str, data_file: str):
    return make_target(name, TargetSpec(k_max=3, path=data_file if name == "file" else None))


@pytest.mark.parametrize("name", KERNELS.names())
def test_kernel_contract(name: str) -> None:
    d = torch.linspace(0.0, 10.0, 101)
    for dim in (1, 2):
        lk = log_kernel(name, d, 0.7, dim)
        assert lk.shape == d.shape and torch.isfinite(lk).all()
        assert lk[0].item() == pytest.approx(0.0, abs=1e-7)  # k(0) = 1
        assert (lk[1:] < lk[:-1]).all()  # radial and strictly decreasing
        # bandwidth is a length scale: k(d; h) = k(d / h; 1)
        assert torch.allclose(log_kernel(name, 2.0 * d, 1.4, dim), lk, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in KERNELS.names() if KERNELS.get(n).exp_poly is not None])
def test_kernel_exp_poly_is_the_kernel(name: str) -> None:
    """A kernel's `exp_poly` (lam, P) is the kernel: k(r) = exp(-lam r) P(r) at bandwidth 1, in 1-D (what the
    1-D scan plan sums, expscan.py)."""
    lam, poly = KERNELS.get(name).exp_poly
    r = torch.linspace(0.0, 12.0, 241, dtype=torch.float64)
    closed = torch.exp(-lam * r) * sum(a * r**i for i, a in enumerate(poly))
    assert torch.allclose(log_kernel(name, r, 1.0, 1).exp(), closed, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", KERNELS.names())
def test_kernel_has_a_linear_theory(name: str) -> None:
    """Every kernel has a Fourier transform entry; rate = -s kappa'(s) and kappa(0) = 1."""
    sp = theory.spectral(name)
    for dim in (1, 2):
        assert sp.kappa(0.0, dim) == pytest.approx(1.0)
        for s in (0.3, 1.0, 2.5):
            deriv = (sp.kappa(s + 1e-6, dim) - sp.kappa(s - 1e-6, dim)) / 2e-6
            assert sp.decay(s, dim) == pytest.approx(-s * deriv, rel=1e-5)


@pytest.mark.parametrize("name", KERNELS.names())
def test_kernel_fourier_transform_matches_quadrature(name: str) -> None:
    """kappa is the normalised 1-D Fourier transform of the kernel (numerical quadrature)."""
    z = torch.linspace(-400.0, 400.0, 800001, dtype=torch.float64)
    k = log_kernel(name, z.abs(), 1.0, 1).exp()
    for s in (0.5, 1.0, 2.0):
        ft = torch.trapezoid(k * torch.cos(s * z), z) / torch.trapezoid(k, z)
        assert float(ft) == pytest.approx(theory.spectral(name).kappa(s, 1), abs=2e-3)


@pytest.mark.parametrize("name", OPERATORS.names())
@pytest.mark.parametrize("periodic", [False, True])
def test_operator_contract(name: str, periodic: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 2, generator=g) * (2 * math.pi if periodic else 2.0)
    pos = torch.rand(40, 2, generator=g) * (2 * math.pi if periodic else 2.0)
    for kernel in KERNELS.names():
        field = FieldSpec(kernel, 0.6, periodic=periodic, neg_is_x=True, sinkhorn_iters=5)
        v = drift(name, x, pos, x, field)
        assert v.shape == x.shape and v.dtype == x.dtype and torch.isfinite(v).all()
        if not periodic:  # translation equivariance on the plane: V(x + c; p + c, q + c) = V(x; p, q)
            c = torch.tensor([0.3, -0.2])
            assert torch.allclose(drift(name, x + c, pos + c, x + c, field), v, atol=1e-4)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_contract(name: str) -> None:
    h0, rate, h_min = 2.0, 0.3, 0.1
    hs = [bandwidth_at(name, t, h0, rate, h_min) for t in np.linspace(0.0, 50.0, 201)]
    assert hs[0] == pytest.approx(h0)
    assert all(b <= a + 1e-12 for a, b in zip(hs, hs[1:]))  # non-increasing
    assert all(h >= h_min - 1e-12 and h > 0 for h in hs)


@pytest.mark.parametrize("name", TARGETS.names())
def test_target_contract(name: str, data_file: str) -> None:
    target = _target(name, data_file)
    g = torch.Generator().manual_seed(0)
    for draw in (target.sample, target.sample_stratified):
        x = draw(257, g)
        assert x.shape == (257, target.dim) and x.dtype == torch.float32 and torch.isfinite(x).all()
        if target.periodic:
            assert (x >= 0).all() and (x < 2 * math.pi + 1e-6).all()
    assert target.init(100, g).shape == (100, target.dim)
    # same generator state, same draws: sampling is reproducible
    a = target.sample(50, torch.Generator().manual_seed(5))
    b = target.sample(50, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", [n for n in TARGETS.names() if n.startswith("torus")])
@pytest.mark.parametrize("k_max", [1, 4])
def test_sampler_fourier_coefficients_within_noise(name: str, k_max: int) -> None:
    """Empirical Fourier coefficients of i.i.d. samples match the exact ones within 4 noise floors."""
    target = make_target(name, TargetSpec(k_max=k_max, amplitude=0.8))
    n = 40000
    x = target.sample(n, torch.Generator().manual_seed(1))
    freqs = frequencies(target.dim, k_max + 1)  # include modes the target does not carry
    err = (empirical_fourier(x, freqs) - target.fourier(freqs)).abs()
    assert float(err.max()) < 4 * noise_floor(n)
    # the stratified sampler is far below the i.i.d. floor
    xs = target.sample_stratified(n, torch.Generator().manual_seed(1))
    assert float((empirical_fourier(xs, freqs) - target.fourier(freqs)).abs().max()) < noise_floor(n)


@pytest.mark.parametrize("amplitude", [0.8, 1.0])
@pytest.mark.parametrize("name", [n for n in TARGETS.names() if n.startswith("torus")])
def test_stratified_inverse_cdf_is_exact(name: str, amplitude: float) -> None:
    """Each coordinate's conditional CDF at the drawn value equals its uniform to 1e-12 (float64), also where
    the density touches 0 (amplitude 1); and the CDF's slope is the density it reports."""
    target = make_target(name, TargetSpec(k_max=4, amplitude=amplitude))
    u = torch.rand(2000, target.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    xs: list[torch.Tensor] = []
    for j in range(target.dim):
        prefix = torch.stack(xs, 1) if xs else u.new_zeros(u.shape[0], 0)
        cdf_pdf = target._conditional_cdf(prefix)
        s = target._invert(cdf_pdf, u[:, j])
        cdf, pdf = cdf_pdf(s)
        assert float((cdf - u[:, j]).abs().max()) < 1e-12
        assert bool(((s >= 0) & (s <= 2 * math.pi)).all())
        eps = 1e-6
        slope = (cdf_pdf(s + eps)[0] - cdf_pdf(s - eps)[0]) / (2 * eps)
        assert float((slope - pdf).abs().max()) < 1e-6
        xs.append(s)


@pytest.mark.parametrize("name", [n for n in TARGETS.names() if n.startswith("torus")])
def test_conditional_cdf_equals_its_definition(name: str) -> None:
    """The conditional CDF's numerator (per-|m| sums against cos(k s), sin(k s)) equals its definition summed mode
    by mode: s + sum_m a_m (sin(b_m + m_j s) - sin b_m) / m_j (s a_m cos b_m where m_j = 0), b_m = m.x + phi_m over
    the earlier coordinates, normalised by its value at 2 pi; and the density is the marginal's density."""
    target = make_target(name, TargetSpec(k_max=6, amplitude=0.9))
    g = torch.Generator().manual_seed(11)
    n = 300
    x = torch.rand(n, target.dim, generator=g, dtype=torch.float64) * 2 * math.pi
    for j in range(target.dim):
        keep = (target.modes[:, j + 1:] == 0).all(1)
        m, a, phi = target.modes[keep], target.amps[keep], target.phases[keep]
        b = x[:, :j] @ m[:, :j].T + phi  # (n, F')

        def numerator(s: torch.Tensor) -> torch.Tensor:
            v = m[:, j]
            flat = v == 0
            along = torch.where(flat, s[:, None] * torch.cos(b),
                                (torch.sin(b + s[:, None] * v) - torch.sin(b)) / torch.where(flat, 1.0, v))
            return s + (a * along).sum(1)

        def density(s: torch.Tensor) -> torch.Tensor:
            return 1.0 + (a * torch.cos(b + s[:, None] * m[:, j])).sum(1)

        cdf_pdf = target._conditional_cdf(x[:, :j])
        s = x[:, j]
        total = numerator(torch.full_like(s, 2 * math.pi))
        cdf, pdf = cdf_pdf(s)
        assert float((cdf - numerator(s) / total).abs().max()) < 1e-13
        assert float((pdf - density(s) / total).abs().max()) < 1e-13


@pytest.mark.parametrize("name", [n for n in TARGETS.names() if n.startswith("torus")])
def test_periodic_density_normalised_and_consistent(name: str) -> None:
    target = make_target(name, TargetSpec(k_max=3))
    g = 64
    axes = [torch.arange(g, dtype=torch.float64) * 2 * math.pi / g] * target.dim
    pts = torch.cartesian_prod(*axes).reshape(-1, target.dim)
    dens = target.density(pts)
    cell = (2 * math.pi / g) ** target.dim
    assert float(dens.sum() * cell) == pytest.approx(1.0, rel=1e-9)
    assert float(dens.min()) > 0
    freqs = frequencies(target.dim, 3)
    quad = torch.exp(1j * (pts @ freqs.double().T)).mul(dens.unsqueeze(1)).sum(0) * cell
    assert torch.allclose(quad, target.fourier(freqs), atol=1e-10)


def test_frequencies_cover_the_half_space() -> None:
    f = frequencies(2, 2)
    assert f.shape == ((5 * 5 - 1) // 2, 2)
    assert set(map(tuple, f.tolist())).isdisjoint({tuple((-f)[i].tolist()) for i in range(len(f))})
    assert frequencies(1, 4).squeeze(1).tolist() == [1, 2, 3, 4]
