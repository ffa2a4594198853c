"""The 3-D torus target: its modes, its exact law and spectrum, its lattice sampler, the spectral backend in
3-D, and per-mode decay rates of a particle simulation against the linear theory (lambda for dim = 3).

Rate method: as tests/core/test_linear_theory.py in 2-D, on a product lattice: particles quantile-placed along
one axis for superposed perturbations of the modes k e_axis, uniform along the other two; data the uniform
lattice.  The field is the spectral backend's (exact periodic sums through FINUFFT): streaming the
3-D image sums at these sizes takes minutes on two cores.  The Laplacian is left out: its 3-D coefficients
decay like (k h)^-4 against k^2 per shell, so no truncation reaches the spectral tolerance, and 3-D Ewald
is not implemented (spectral.forced_plan raises).
"""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import spectral
from drift_sweeps.core.catalog import make_target
from drift_sweeps.core.geometry import wrap
from drift_sweeps.core.metrics import empirical_fourier, frequencies
from drift_sweeps.core.operators import FieldSpec, drift
from drift_sweeps.core.targets import TargetSpec, korobov_vector, lattice_unit
from drift_sweeps.spine import theory
from drift_sweeps.spine.config import ConfigError, TrialConfig
from drift_sweeps.spine.record import noise_floor
from drift_sweeps.spine.torus import TORUS3D_K_MAX, TORUS_DIMS, carries, mode_norms, mode_vectors

from .helpers import mode, quantile_particles, uniform_grid
from .test_linear_theory import AMP, _assert_rates


def test_mode_vectors_3d() -> None:
    """Three axes and six face diagonals per k, each once up to sign; norms k and k sqrt(2)."""
    assert TORUS_DIMS["torus3d"] == 3
    vecs = mode_vectors(3, 1, 3)
    assert len(vecs) == 9 * 3 and len(set(vecs)) == len(vecs)
    assert not set(vecs) & {tuple(-c for c in v) for v in vecs}
    assert {(2, 0, 0), (0, 2, 0), (0, 0, 2), (2, -2, 0), (0, 2, -2)} <= set(vecs)
    assert mode_norms(3, 1, 2) == pytest.approx([1.0, math.sqrt(2), 2.0, 2 * math.sqrt(2)])
    assert carries((0, 0, -3), 3, 1, 3) and not carries((1, 1, 1), 3, 1, 3)


def test_single_mode_target_has_the_exact_spectrum() -> None:
    """target_modes='single', phase 'zero': only the 9 vectors of |k|_inf = k_max, each a/9/2."""
    target = make_target("torus3d", TargetSpec(k_max=2, modes="single", phase="zero", amplitude=0.45))
    assert target.active_modes().tolist() == [list(v) for v in mode_vectors(3, 2, 2)]
    freqs = frequencies(3, 2)
    coef = target.fourier(freqs)
    carried = torch.tensor([carries(tuple(k), 3, 2, 2) for k in freqs.tolist()])
    assert torch.allclose(coef[carried], torch.full((9,), 0.45 / 9 / 2, dtype=torch.complex128))
    assert float(coef[~carried].abs().max()) == 0.0


def test_lattice_points_are_uniform_and_stratified() -> None:
    """Each lattice coordinate is a shifted grid i/n (z_1 = 1); the 3-D stratified sampler's Fourier errors are
    far below the i.i.d. floor on every carried mode."""
    n = 4096
    z = korobov_vector(n, 3)
    assert z[0] == 1 and korobov_vector(n, 3) is z  # cached
    u = lattice_unit(n, 3, torch.Generator().manual_seed(0))
    for j in range(3):  # every coordinate of an n-point rank-1 lattice with gcd(z_j, n) = 1 is a grid
        if math.gcd(z[j], n) == 1:
            gaps = torch.sort(u[:, j]).values.diff()
            assert torch.allclose(gaps, torch.full_like(gaps, 1.0 / n), atol=1e-9)
    target = make_target("torus3d", TargetSpec(k_max=3, amplitude=0.8))
    x = target.sample_stratified(n, torch.Generator().manual_seed(1))
    err = (empirical_fourier(x, target.active_modes()) - target.fourier(target.active_modes())).abs()
    assert float(err.max()) < 0.01 * noise_floor(n)


def test_k_max_bound_for_torus3d() -> None:
    TrialConfig.from_dict({"target": "torus3d", "k_max": TORUS3D_K_MAX})
    with pytest.raises(ConfigError, match="'k_max'"):
        TrialConfig.from_dict({"target": "torus3d", "k_max": TORUS3D_K_MAX + 1})


@pytest.mark.skipif(not spectral.nufft_available(), reason="FINUFFT not installed")
@pytest.mark.parametrize("h", [0.5, 1.0])
def test_spectral_backend_matches_streaming_in_3d(h: float) -> None:
    """The spectral mean-shift field in 3-D equals the streamed image sum (float64) to 1e-6 of max |V|
    (measured 1e-7 and 1e-8) for the Gaussian.  (The Cauchy's streamed image sum converges only like
    1 / shells in 3-D: 7%, 4% off at 3, 6 shells, so it is no reference there.)"""
    g = torch.Generator().manual_seed(3)
    x = 2 * math.pi * torch.rand(120, 3, generator=g, dtype=torch.float64)
    y = 2 * math.pi * torch.rand(150, 3, generator=g, dtype=torch.float64)
    spec_v = drift("meanshift", x, y, x, FieldSpec("gaussian", h, periodic=True, backend="spectral"))
    stream_v = drift("meanshift", x, y, x, FieldSpec("gaussian", h, periodic=True, backend="stream"))
    assert float((spec_v - stream_v).abs().max()) < 1e-6 * float(stream_v.abs().max())


def simulate_3d(kernel: str, ks: list[int], h: float, dt: float, steps: int, axis: int,
                side_axis: int = 40, side: int = 12) -> list[list[complex]]:
    """Particles on a product lattice, quantile-placed along `axis` for the modes k e_axis, uniform along the
    other two; data the uniform lattice.  -> E exp(i k x_axis) after each step."""
    cols = [uniform_grid(side)[:, 0]] * 3
    data_cols = list(cols)
    cols[axis] = quantile_particles(side_axis, {k: AMP for k in ks})[:, 0]
    data_cols[axis] = uniform_grid(side_axis)[:, 0]
    x, y = torch.cartesian_prod(*cols), torch.cartesian_prod(*data_cols)  # (side_axis side^2, 3)
    field = FieldSpec(kernel, h, periodic=True, neg_is_x=True, backend="spectral")
    out = [[mode(x[:, axis : axis + 1], k) for k in ks]]
    for _ in range(steps):
        with torch.no_grad():
            x = wrap(x + dt * drift("meanshift", x, y, x, field))
        out.append([mode(x[:, axis : axis + 1], k) for k in ks])
    return out


CASES_3D = [  # (kernel, h, modes along the axis, axis): the first and the last axis
    ("gaussian", 0.5, [1, 2, 3], 0),
    ("cauchy", 1.0, [1, 2, 4], 2),
]


@pytest.mark.skipif(not spectral.nufft_available(), reason="FINUFFT not installed")
@pytest.mark.parametrize("kernel,h,ks,axis", CASES_3D)
def test_fixed_bandwidth_rates_match_lambda_3d(kernel: str, h: float, ks: list[int], axis: int) -> None:
    """Axis modes on the 3-D torus decay at lambda_3(k) within 5% (measured 0.2-2.4%)."""
    dt, steps = 0.25, 12
    _assert_rates(simulate_3d(kernel, ks, h, dt, steps, axis), kernel, h, ks, dt, dim=3)
