"""Mode metrics against closed forms: samples placed in known proportions and at known distances, the chi
distribution's CDF for the share within 3 sigma (1-D, 2-D, 10-D) against Monte Carlo of the sampler, the
Jensen-Shannon divergence by hand, and the coverage threshold at its edge."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import modes
from drift_sweeps.core.catalog import make_target
from drift_sweeps.core.mixture import sample_mixture, sample_mixture_stratified
from drift_sweeps.core.modes import MODE_METRICS, Mixture, js_divergence, mode_metrics, nearest_mode, within_share
from drift_sweeps.core.targets import TargetSpec


def _line(k: int, dim: int = 2, sep: float = 10.0, std: float = 0.5, weights=None) -> Mixture:
    c = torch.zeros(k, dim, dtype=torch.float64)
    c[:, 0] = torch.arange(k, dtype=torch.float64) * sep
    w = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)
    return Mixture(c, std, w)


def _placed(mix: Mixture, counts: list[int], offset: float = 0.0) -> torch.Tensor:
    """counts[j] samples at centre j (shifted by `offset` along the last axis)."""
    pts = [mix.centres[j].expand(c, -1) for j, c in enumerate(counts)]
    x = torch.cat(pts).clone()
    x[:, -1] += offset
    return x


def test_within_share_closed_forms() -> None:
    """P(chi_D <= 3): erf(3/sqrt 2) in 1-D, 1 - exp(-9/2) in 2-D, 1 - e^-4.5 sum_{i<5} 4.5^i/i! in 10-D."""
    assert within_share(3.0, 1) == pytest.approx(math.erf(3 / math.sqrt(2)), rel=1e-12)
    assert within_share(3.0, 2) == pytest.approx(1 - math.exp(-4.5), rel=1e-12)
    ten = 1 - math.exp(-4.5) * sum(4.5**i / math.factorial(i) for i in range(5))
    assert within_share(3.0, 10) == pytest.approx(ten, rel=1e-12)
    assert ten == pytest.approx(0.4679, abs=1e-4)


@pytest.mark.parametrize("dim", [1, 2, 10])
def test_high_quality_share_of_the_sampler_is_the_chi_cdf(dim: int) -> None:
    """Exact samples of well-separated modes: the share within 3 sigma matches P(chi_D <= 3) within 4 binomial
    standard errors (i.i.d.) and within 0.5% (stratified)."""
    mix = _line(3, dim, sep=20.0, std=0.7, weights=[0.5, 0.3, 0.2])
    n = 40000
    p = within_share(3.0, dim)
    iid = mode_metrics(sample_mixture(mix, n, torch.Generator().manual_seed(dim)), mix)
    assert abs(iid["high_quality_share"] - p) < 4 * math.sqrt(p * (1 - p) / n)
    strat = mode_metrics(sample_mixture_stratified(mix, n, torch.Generator().manual_seed(dim)), mix)
    assert abs(strat["high_quality_share"] - p) < 0.005
    assert strat["mode_mass_error"] < 1e-3 and iid["mode_mass_error"] < 4 * math.sqrt(0.25 / n)
    assert iid["modes_covered"] == strat["modes_covered"] == 3.0


def test_placed_samples_give_the_closed_forms() -> None:
    """400 / 100 / 0 / 500 samples on four modes of weights 1/4: q = (0.4, 0.1, 0, 0.5)."""
    mix = _line(4)
    x = _placed(mix, [400, 100, 0, 500])
    out = mode_metrics(x, mix)
    assert set(out) == set(MODE_METRICS)
    assert out["high_quality_share"] == 1.0
    assert out["mode_mass_error"] == pytest.approx(0.25)  # the empty mode: |0 - 1/4|
    q, p = [0.4, 0.1, 0.0, 0.5], [0.25] * 4
    m = [(a + b) / 2 for a, b in zip(q, p)]
    js = 0.5 * sum(a * math.log(a / c) for a, c in zip(q, m) if a > 0) + 0.5 * sum(
        b * math.log(b / c) for b, c in zip(p, m))
    assert out["mode_js"] == pytest.approx(js, rel=1e-12)
    # need per mode: 0.2 * 1000 * 1/4 * P(chi_2 <= 3) = 49.4 -> 100, 400, 500 qualify, 0 does not
    assert out["modes_covered"] == 3.0


def test_coverage_threshold_edge() -> None:
    """Of N = 1000, a mode with 50 high-quality samples is covered (need 0.2 * 1000 / 4 * 0.989 = 49.4), with
    49 it is not; off-mode samples count for their nearest mode's mass but not for coverage."""
    mix = _line(4)
    base = _placed(mix, [317, 317, 316, 50])
    assert mode_metrics(base, mix)["modes_covered"] == 4.0
    fewer = _placed(mix, [317, 317, 317, 49])
    assert mode_metrics(fewer, mix)["modes_covered"] == 3.0
    # 45 on mode 3 and 20 more just beyond 3 sigma of it: 65 nearest, but 45 < 47.7 = 0.2 * 965 / 4 * 0.989
    far = torch.cat([_placed(mix, [300, 300, 300, 45]), _placed(mix, [0, 0, 0, 20], offset=3.01 * mix.std)])
    out = mode_metrics(far, mix)
    assert out["modes_covered"] == 3.0 and out["high_quality_share"] == pytest.approx(945 / 965)
    assert out["mode_mass_error"] == pytest.approx(0.25 - 65 / 965)


def test_radius_is_three_sigma() -> None:
    """Samples at 2.99 sigma count as high quality, at 3.01 sigma they do not."""
    mix = _line(2, dim=3)
    inside = mode_metrics(_placed(mix, [10, 10], offset=2.99 * mix.std), mix)
    outside = mode_metrics(_placed(mix, [10, 10], offset=3.01 * mix.std), mix)
    assert inside["high_quality_share"] == 1.0 and outside["high_quality_share"] == 0.0
    assert outside["modes_covered"] == 0.0 and outside["mode_mass_error"] == 0.0


def test_js_divergence_bounds() -> None:
    p = torch.tensor([0.5, 0.5, 0.0])
    assert js_divergence(p, p) == 0.0
    assert js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(math.log(2))
    q = torch.tensor([0.2, 0.3, 0.5])
    assert js_divergence(q, p) == pytest.approx(js_divergence(p, q))


def test_nearest_mode_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blockwise nearest-mode search equals one block."""
    mix = _line(5, dim=4, sep=1.0)
    x = sample_mixture(mix, 1000, torch.Generator().manual_seed(0))
    whole = nearest_mode(x, mix.centres)
    monkeypatch.setattr(modes, "NEAREST_CHUNK", 37)
    blocks = nearest_mode(x, mix.centres)
    assert torch.equal(whole[0], blocks[0]) and torch.allclose(whole[1], blocks[1])


def test_zero_weight_modes_are_not_counted() -> None:
    mix = _line(3, weights=[0.5, 0.5, 0.0])
    out = mode_metrics(_placed(mix, [100, 100, 0]), mix)
    assert out["modes_covered"] == 2.0 and out["mode_mass_error"] == 0.0 and out["mode_js"] == 0.0


def test_bad_input() -> None:
    mix = _line(2)
    with pytest.raises(ValueError, match="samples must be"):
        mode_metrics(torch.zeros(5, 3), mix)
    assert all(math.isnan(v) for v in mode_metrics(torch.zeros(0, 2), mix).values())
    with pytest.raises(ValueError):
        Mixture(torch.zeros(2, 2), 0.0, torch.ones(2) / 2)


def test_gaussian_grid_exposes_its_modes() -> None:
    """gaussian_grid: K_max^2 equal modes of std spacing/6; its own samples cover them all."""
    target = make_target("gaussian_grid", TargetSpec(k_max=3))
    mix = target.mixture
    assert mix.centres.shape == (9, 2) and mix.std == pytest.approx(2.0 / 6.0)
    out = mode_metrics(target.sample(9000, torch.Generator().manual_seed(0)), mix)
    assert out["modes_covered"] == 9.0 and out["mode_mass_error"] < 0.02
    assert out["high_quality_share"] == pytest.approx(within_share(3.0, 2), abs=0.005)
    assert make_target("torus1d", TargetSpec()).mixture is None
