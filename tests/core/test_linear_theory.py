"""Measured mode decay of a many-particle simulation against docs/theory.md (per-mode rates, convergence time).

Method: a many-particle simulation on the 1-D torus (not a grid PDE solver).  N particles are
placed at the quantiles of p(x) = (1 + a sum_k cos(k x)) / 2pi with a small a, so the particle
set carries the perturbation with no sampling noise; the data are M equally spaced points (the
exact uniform target).  Particles move by x <- x + dt V with the mean-shift drift and negatives
= the particles.  At linear order in a, each mode is multiplied by exactly (1 - dt lambda(k))
per step, so lambda is read off the whole trajectory as (1 - (c_n / c_0)^(1/n)) / dt.
"""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.spine import theory
from drift_sweeps.core.geometry import wrap
from drift_sweeps.core.operators import FieldSpec, drift
from drift_sweeps.spine.schedules import bandwidth_at

from .helpers import mode, quantile_particles, simulate_meanshift, uniform_grid

N, M, AMP = 800, 800, 0.01


def simulate(kernel: str, ks: list[int], dt: float, steps: int, schedule: str = "constant",
             h0: float = 1.0, rate: float = 0.0) -> list[list[complex]]:
    """Mode coefficients c_k after each step, for every k in ks (superposed perturbations)."""
    x = quantile_particles(N, {k: AMP for k in ks})
    y = uniform_grid(M)
    out = [[mode(x, k) for k in ks]]
    for step in range(steps):
        h = bandwidth_at(schedule, step * dt, h0, rate, 0.0)
        field = FieldSpec(kernel, h, periodic=True, neg_is_x=True)
        with torch.no_grad():
            x = wrap(x + dt * drift("meanshift", x, y, x, field))
        out.append([mode(x, k) for k in ks])
    return out


CASES = [  # (kernel, h, modes whose rate is large enough to measure in `steps` steps)
    ("gaussian", 0.5, [1, 2, 3, 4]),
    ("gaussian", 1.0, [1, 2, 3]),
    ("laplacian", 0.5, [1, 2, 4, 8]),
    ("laplacian", 1.0, [1, 2, 4]),
    ("cauchy", 0.5, [1, 2, 4, 8]),
    ("cauchy", 1.0, [1, 2, 4]),
]


@pytest.mark.parametrize("kernel,h,ks", CASES)
def test_fixed_bandwidth_rates_match_lambda(kernel: str, h: float, ks: list[int]) -> None:
    dt, steps = 0.25, 12
    _assert_rates(simulate(kernel, ks, dt, steps, h0=h), kernel, h, ks, dt, dim=1)


def _assert_rates(traj: list[list[complex]], kernel: str, h: float, ks: list[int], dt: float, dim: int) -> None:
    """Each mode's mean per-step decay over the trajectory within 5% of lambda_dim(k)."""
    steps = len(traj) - 1
    for i, k in enumerate(ks):
        ratio = abs(traj[-1][i]) / abs(traj[0][i])
        measured = (1.0 - ratio ** (1.0 / steps)) / dt
        predicted = theory.decay_rate(kernel, k, h, dim=dim)
        rel = abs(measured - predicted) / predicted
        print(f"{dim}-D {kernel} h={h} k={k}: measured {measured:.4f} predicted {predicted:.4f} rel.err {rel:.2%}")
        assert rel < 0.05, (dim, kernel, h, k, measured, predicted)


def simulate_2d(kernel: str, ks: list[int], h: float, dt: float, steps: int, side: int = 40) -> list[list[complex]]:
    """2-D torus: particles on a side x side product lattice, quantile-placed along x for the
    superposed perturbations of `ks` (so they carry the x-modes (k, 0)), uniform along y; data
    the uniform side x side grid.  -> mode coefficients E exp(i k x_1) after each step."""
    xs = quantile_particles(side, {k: AMP for k in ks})[:, 0]  # (side,)
    ys = uniform_grid(side)[:, 0]
    x = torch.cartesian_prod(xs, ys)  # (side^2, 2)
    y = torch.cartesian_prod(uniform_grid(side)[:, 0], ys)
    return simulate_meanshift(x, y, FieldSpec(kernel, h, periodic=True, neg_is_x=True), ks, dt, steps)


CASES_2D = [  # (kernel, h, modes along the x axis)
    ("cauchy", 0.5, [1, 2, 4]),
    ("cauchy", 1.0, [1, 2]),
    ("gaussian", 0.5, [1, 2, 3]),
    ("laplacian", 0.5, [1, 2, 4]),
]


@pytest.mark.parametrize("kernel,h,ks", CASES_2D)
def test_fixed_bandwidth_rates_match_lambda_2d(kernel: str, h: float, ks: list[int]) -> None:
    """Axis modes on the 2-D torus decay at lambda_2(k) (the 2-D transform), within 5%."""
    dt, steps = 0.25, 12
    _assert_rates(simulate_2d(kernel, ks, h, dt, steps), kernel, h, ks, dt, dim=2)


def test_exponential_schedule_follows_closed_form() -> None:
    """Mode amplitudes under h(t) = h0 exp(-r t) against log u(t)/u(0) = -(kappa(k h(t)) - kappa(k h0))/r."""
    ks, h0, r, dt, steps = [1, 2, 3], 2.0, 0.5, 0.05, 100
    traj = simulate("gaussian", ks, dt, steps, "exponential", h0, r)
    worst = 0.0
    for n in (20, 50, 100):
        t = n * dt
        for i, k in enumerate(ks):
            measured = abs(traj[n][i]) / abs(traj[0][i])
            # the Euler step at t_n uses h(t_n); the continuous closed form is compared at the same t
            predicted = math.exp(theory.log_decay_exponential("gaussian", k, t, h0, r))
            rel = abs(measured - predicted) / predicted
            worst = max(worst, rel)
            print(f"t={t:.2f} k={k}: measured {measured:.4f} closed form {predicted:.4f} rel.err {rel:.2%}")
            assert rel < 0.10, (t, k, measured, predicted)
    print(f"worst relative amplitude error {worst:.2%}")


def test_theory_reference_values() -> None:
    """The pure-Python theory reproduces the tables of docs/theory.md."""
    table = {0.5: (0.221, 0.320, 0.429), 1: (0.607, 0.500, 0.530), 2: (0.541, 0.320, 0.215),
             4: (5.4e-3, 0.111, 0.040), 8: (8.1e-13, 0.030, 5.6e-3)}
    for a, (g, l1, l2) in table.items():
        assert theory.decay_rate("gaussian", a, 1.0) == pytest.approx(g, rel=0.01)
        assert theory.decay_rate("laplacian", a, 1.0, 1) == pytest.approx(l1, rel=0.01)
        assert theory.decay_rate("laplacian", a, 1.0, 2) == pytest.approx(l2, rel=0.01)
    times = {2: (4.25, 7.2, 5.35), 4: (429, 20.8, 8.12), 8: (2.8e12, 76, 10.89), 16: (3.5e53, 297, 13.67)}
    for k_max, (g, lap, ann) in times.items():
        assert theory.convergence_time("gaussian", k_max, 0.1, 1.0) == pytest.approx(g, rel=0.02)
        assert theory.convergence_time("laplacian", k_max, 0.1, 1.0) == pytest.approx(lap, rel=0.02)
        assert theory.convergence_time("gaussian", k_max, 0.1, 2.0, 0.25) == pytest.approx(ann, rel=0.01)
    # each doubling of K_max adds about ln(2)/r under annealing
    inc = theory.convergence_time("gaussian", 16, 0.1, 2.0, 0.25) - theory.convergence_time("gaussian", 8, 0.1, 2.0, 0.25)
    assert inc == pytest.approx(math.log(2) / 0.25, rel=0.05)


def test_floor_continues_at_constant_rate() -> None:
    h0, r, h_min, k = 2.0, 0.5, 0.5, 3
    t_floor = math.log(h0 / h_min) / r
    a = theory.log_decay_exponential("gaussian", k, t_floor, h0, r, h_min)
    b = theory.log_decay_exponential("gaussian", k, t_floor + 2.0, h0, r, h_min)
    assert b - a == pytest.approx(-2.0 * theory.decay_rate("gaussian", k, h_min), rel=1e-9)
