"""Sample-quality metrics against closed forms for two Gaussians, and their data-vs-data floors."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import quality


def _gauss(n, mu, std, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(mu, dtype=torch.float64) + torch.randn(n, len(mu), generator=g, dtype=torch.float64) * torch.tensor(std, dtype=torch.float64)


def test_frechet_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 0.5])
    # commuting covariances: FD = |dmu|^2 + sum (sigma1 - sigma2)^2
    exact = float((mu1 - mu2).square().sum() + (s1 - s2).square().sum())
    assert quality.frechet_from_stats(mu1, torch.diag(s1**2), mu2, torch.diag(s2**2)) == pytest.approx(exact, rel=1e-10)


def test_frechet_of_rotated_covariances_and_symmetry():
    c1 = torch.tensor([[2.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    c2 = rot @ c1 @ rot.T
    z = torch.zeros(2, dtype=torch.float64)
    # 2x2 closed form: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) with M = C1^1/2 C2 C1^1/2
    m_tr, m_det = float((c1 @ c2).trace()), float(torch.linalg.det(c1) * torch.linalg.det(c2))
    exact = float(c1.trace() + c2.trace()) - 2.0 * math.sqrt(m_tr + 2.0 * math.sqrt(m_det))
    assert quality.frechet_from_stats(z, c1, z, c2) == pytest.approx(exact, rel=1e-9)
    assert quality.frechet_from_stats(z, c2, z, c1) == pytest.approx(exact, rel=1e-9)
    assert quality.frechet_from_stats(z, c1, z, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_from_samples_converges_to_the_closed_form():
    x, y = _gauss(40000, [0.0, 0.0], [1.0, 2.0], 0), _gauss(40000, [1.0, 0.0], [2.0, 2.0], 1)
    assert quality.frechet_distance(x, y) == pytest.approx(1.0 + 1.0, abs=0.06)


def test_mmd_closed_form_matches_samples_and_one_dimensional_quadrature():
    mu1, mu2 = torch.tensor([0.0, 0.0]), torch.tensor([0.8, 0.0])
    c1, c2 = torch.diag(torch.tensor([1.0, 1.0])), torch.diag(torch.tensor([0.25, 1.0]))
    h = 1.0
    exact = quality.mmd2_gaussians(mu1, c1, mu2, c2, h)
    x, y = _gauss(2000, [0.0, 0.0], [1.0, 1.0], 2), _gauss(2000, [0.8, 0.0], [0.5, 1.0], 3)
    est = quality.mmd2(x, y, scale=h, scales=(1.0,))
    # the V-statistic's bias is O(1/n); sampling noise about 5e-3 at n = 2000
    assert est == pytest.approx(exact, abs=0.015)
    assert exact > 0.05
    # 1-D check of E k(X, Y) against a quadrature: X ~ N(0, 1), Y ~ N(m, s^2), k = exp(-d^2/2)
    m, s = 0.8, 0.5
    grid = torch.linspace(-10, 10, 4001, dtype=torch.float64)
    dx = float(grid[1] - grid[0])
    px = torch.exp(-grid**2 / 2) / math.sqrt(2 * math.pi)
    py = torch.exp(-((grid - m) / s) ** 2 / 2) / (s * math.sqrt(2 * math.pi))
    kmat = torch.exp(-(grid[:, None] - grid[None, :]) ** 2 / 2)
    quad = lambda a, b: float(a @ kmat @ b) * dx * dx  # noqa: E731
    exact_1d = quad(px, px) + quad(py, py) - 2 * quad(px, py)
    closed_1d = quality.mmd2_gaussians(torch.tensor([0.0]), torch.tensor([[1.0]]), torch.tensor([m]), torch.tensor([[s * s]]), 1.0)
    assert closed_1d == pytest.approx(exact_1d, rel=1e-6)


def test_sliced_w2_of_isotropic_gaussians():
    # along a unit u: W2^2 = (u.dmu)^2 + (s1 - s2)^2, averaged over directions: |dmu|^2 / D + (s1 - s2)^2
    x, y = _gauss(8000, [0.0, 0.0], [1.0, 1.0], 4), _gauss(8000, [2.0, 0.0], [1.5, 1.5], 5)
    exact = 4.0 / 2 + 0.25
    assert quality.sliced_w2(x, y, torch.Generator().manual_seed(0), n_dirs=256) == pytest.approx(exact, rel=0.05)
    # unequal sizes use interpolated quantiles of the larger sample
    assert quality.sliced_w2(x[:2000], y, torch.Generator().manual_seed(0), n_dirs=256) == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize("metric", ["energy", "sliced", "mmd"])
def test_floors_shrink_with_n_and_sit_far_below_a_wrong_law(metric):
    fns = {
        "energy": lambda a, b: quality.energy_distance(a, b, False),
        "sliced": lambda a, b: quality.sliced_w2(a, b, torch.Generator().manual_seed(0)),
        "mmd": lambda a, b: quality.mmd2(a, b, 1.0),
    }
    fn = fns[metric]
    seeds = iter(range(100, 200))
    draw = lambda n: _gauss(n, [0.0, 0.0], [1.0, 1.0], next(seeds))  # noqa: E731
    small = sum(quality.floor(fn, draw, 200) for _ in range(4)) / 4
    large = sum(quality.floor(fn, draw, 1600) for _ in range(4)) / 4
    assert 0 < large < small / 3  # every estimator's floor falls like 1/n
    wrong = fn(draw(1600), _gauss(1600, [0.5, 0.0], [1.0, 1.0], 7))
    assert wrong > 10 * large


def test_class_metrics_exact_values():
    uniform = quality.class_histogram(torch.arange(100) % 10, 10)
    assert torch.allclose(uniform, torch.full((10,), 0.1, dtype=torch.float64))
    assert quality.class_kl(uniform) == pytest.approx(0.0, abs=1e-12)
    assert quality.class_coverage(uniform) == 1.0
    assert quality.class_max_deviation(uniform) == pytest.approx(0.0, abs=1e-12)
    single = quality.class_histogram(torch.full((50,), 3), 10)
    assert quality.class_kl(single) == pytest.approx(math.log(10))
    assert quality.class_coverage(single) == pytest.approx(0.1)
    assert quality.class_max_deviation(single) == pytest.approx(0.9)
    half = quality.class_histogram(torch.tensor([0] * 50 + [1] * 50), 10)
    assert quality.class_kl(half) == pytest.approx(math.log(5))


def test_eval_repeats_average_the_plane_metrics_and_their_floors_over_independent_draws():
    """eval_repeats R: the floor is the mean of R data-vs-data energy distances (draw r against data draw r),
    a set of samples is measured chunk r against data draw r, and R = 1 keeps the single-draw protocol."""
    from drift_sweeps.measure import Evaluation
    from drift_sweeps.spine.config import TrialConfig
    from drift_sweeps.trial import build_target

    cfg = TrialConfig.from_dict({"target": "moons", "model": "mlp", "n_eval": 300, "eval_repeats": 4})
    target = build_target(cfg)
    ev = Evaluation(cfg, target, torch.device("cpu"), torch.Generator().manual_seed(3))
    data, other = ev.ctx.eval_data, ev.ctx.other
    assert data.shape == other.shape == (1200, 2)
    pairs = [quality.energy_distance(other[r * 300:(r + 1) * 300], data[r * 300:(r + 1) * 300], False)
             for r in range(4)]
    assert ev.floors["sample_distance_floor"] == pytest.approx(sum(pairs) / 4, rel=1e-9)
    assert ev(other)["sample_distance"] == pytest.approx(ev.floors["sample_distance_floor"], rel=1e-9)
    # the averaged floor is steadier than one draw: over 10 trials' floors, a smaller spread
    def spread(repeats):
        floors = []
        for seed in range(10):
            c = TrialConfig.from_dict({"target": "moons", "model": "mlp", "n_eval": 300, "eval_repeats": repeats})
            floors.append(Evaluation(c, target, torch.device("cpu"),
                                     torch.Generator().manual_seed(seed)).floors["sample_distance_floor"])
        t = torch.tensor(floors)
        return float(t.std() / t.mean())
    assert spread(8) < 0.6 * spread(1)
    one = Evaluation(TrialConfig.from_dict({"target": "moons", "model": "mlp", "n_eval": 300}), target,
                     torch.device("cpu"), torch.Generator().manual_seed(3))
    assert one.ctx.eval_data.shape == (300, 2)


def test_torus_spectrum_is_measured_on_every_particle_and_pairwise_metrics_on_n_eval():
    """A particle system larger than n_eval: the per-frequency errors (O(N F)) use all N particles, whose noise
    floor is ~1/sqrt(N); only the torus energy distance (O(n^2)) uses the fixed random n_eval of them.  (A
    refactor once measured the spectrum on n_eval = 1024 of 65536 particles: study 3b's trials could not
    reach eps = 0.1 below that subset's noise.)"""
    from drift_sweeps.core.metrics import energy_distance, frequencies, spectrum_error
    from drift_sweeps.measure import Evaluation
    from drift_sweeps.spine.config import TrialConfig
    from drift_sweeps.trial import build_target

    cfg = TrialConfig.from_dict({"target": "torus2d", "k_max": 2, "n_samples": 8192, "n_data": 8192, "n_eval": 256})
    target = build_target(cfg)
    ev = Evaluation(cfg, target, torch.device("cpu"), torch.Generator().manual_seed(0))
    xs = target.sample_stratified(8192, torch.Generator().manual_seed(1))
    out = ev(xs)
    freqs = frequencies(2, 2)
    full = spectrum_error(xs, freqs, target.fourier(freqs))
    sub = ev.ctx.subset(xs)
    assert sub.shape == (256, 2)
    torch.testing.assert_close(torch.tensor(out["spectrum_error"], dtype=full.dtype), full)
    assert out["sample_distance"] == pytest.approx(energy_distance(sub, ev.ctx.eval_data, True), rel=1e-12)
    # stratified draws of the target itself: every mode within a few % on 8192 particles, not on 256
    assert out["worst_rel_error"] < 0.05
    scale = target.fourier(freqs).abs()
    active = scale > 1e-12
    assert float((spectrum_error(sub, freqs, target.fourier(freqs))[active] / scale[active]).max()) > 0.1
