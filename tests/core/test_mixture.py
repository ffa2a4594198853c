"""The mixture target family: layouts and their separation, the exact and stratified samplers against closed
forms (mean, covariance, mode shares, density), the initial laws, the config keys and the trial."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core.catalog import make_target
from drift_sweeps.core.mixture import FAR_SEPARATIONS, layout_centres, mixture_density
from drift_sweeps.core.modes import mode_metrics, nearest_mode
from drift_sweeps.core.targets import TargetSpec
from drift_sweeps.spine.config import ConfigError, TrialConfig
from drift_sweeps.trial import build_target, run_trial


def _pairwise(c: torch.Tensor) -> torch.Tensor:
    return torch.cdist(c, c) + torch.diag(torch.full((c.shape[0],), math.inf, dtype=c.dtype))


@pytest.mark.parametrize("layout,k,dim", [("line", 5, 1), ("line", 4, 3), ("ring", 8, 2), ("ring", 5, 4),
                                          ("grid", 9, 2), ("grid", 4, 5), ("random", 6, 1), ("random", 7, 10)])
def test_layouts_have_separation_l(layout: str, k: int, dim: int) -> None:
    """Every mode's nearest neighbour is exactly L away (line, ring, grid); the smallest pairwise distance is
    exactly L (random); the centres' mean is the origin."""
    sep = 2.5
    c = layout_centres(layout, k, dim, sep, seed=3)
    assert c.shape == (k, dim) and c.dtype == torch.float64
    assert torch.allclose(c.mean(0), torch.zeros(dim, dtype=torch.float64), atol=1e-12)
    nearest = _pairwise(c).min(1).values
    if layout == "random":
        assert float(nearest.min()) == pytest.approx(sep, rel=1e-12)
    else:
        assert torch.allclose(nearest, torch.full_like(nearest, sep), rtol=1e-12)
    if layout in ("ring", "grid"):
        assert not c[:, 2:].any()  # in the plane of the first two axes
    if layout == "ring":
        assert torch.allclose(c.norm(dim=1), torch.full((k,), sep / (2 * math.sin(math.pi / k)), dtype=torch.float64))


def test_random_layout_is_seeded() -> None:
    a, b = layout_centres("random", 5, 3, 1.0, seed=1), layout_centres("random", 5, 3, 1.0, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, layout_centres("random", 5, 3, 1.0, seed=2))


def test_bad_layouts() -> None:
    with pytest.raises(ValueError, match="dim >= 2"):
        layout_centres("ring", 3, 1, 1.0)
    with pytest.raises(ValueError, match="square"):
        layout_centres("grid", 6, 2, 1.0)


def _spec(**kw) -> TargetSpec:
    base = dict(dim=3, n_modes=3, layout="line", separation=4.0, mode_std=0.5, mode_weights=(0.5, 0.3, 0.2))
    return TargetSpec(**{**base, **kw})


@pytest.mark.parametrize("stratified", [False, True])
def test_sampler_moments_and_shares(stratified: bool) -> None:
    """Mean sum p_j c_j, covariance sigma^2 I + sum p_j (c_j - mu)(c_j - mu)^T and mode shares p_j, within 5
    standard errors (i.i.d.); the stratified shares within 1e-3."""
    target = make_target("mixture", _spec())
    mix = target.mixture
    n = 40000
    draw = target.sample_stratified if stratified else target.sample
    x = draw(n, torch.Generator().manual_seed(0)).double()
    assert x.shape == (n, 3) and target.dim == 3 and not target.periodic
    mu = mix.weights @ mix.centres  # (D,)
    dev = mix.centres - mu
    cov = mix.std**2 * torch.eye(3, dtype=torch.float64) + (dev.T * mix.weights) @ dev  # (D, D)
    se = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mu).abs() < 5 * se).all()
    assert torch.allclose(torch.cov(x.T), cov, atol=0.05)
    shares = torch.bincount(nearest_mode(x, mix.centres)[0], minlength=3).double() / n
    tol = 1e-3 if stratified else 5 * math.sqrt(0.25 / n)
    assert (shares - mix.weights).abs().max() < tol


def test_density_integrates_to_one_and_matches_samples() -> None:
    """1-D: the density integrates to 1 and its mass on [c_j - L/2, c_j + L/2] is the mode's weight."""
    target = make_target("mixture", _spec(dim=1, separation=3.0))
    z = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64).unsqueeze(1)
    dens = target.density(z)
    assert float(torch.trapezoid(dens, z[:, 0])) == pytest.approx(1.0, abs=1e-9)
    inside = (z[:, 0] - 3.0).abs() <= 1.5  # the right mode (weight 0.2) and its half-gaps
    assert float(torch.trapezoid(dens * inside, z[:, 0])) == pytest.approx(0.2, abs=2e-3)
    peak = mixture_density(target.mixture, target.mixture.centres[:1])
    assert float(peak) == pytest.approx(0.5 / math.sqrt(2 * math.pi * 0.25), rel=1e-6)


def test_initial_laws() -> None:
    """between: the midpoint of the two modes nearest the centres' mean; far: (R_max + 2L) e_2; collapsed:
    the heaviest mode's law; imbalanced: the modes with init_weights; default: N(0, I)."""
    sep, std = 4.0, 0.5
    g = torch.Generator().manual_seed(1)
    between = make_target("mixture", _spec(n_modes=2, mode_weights=(), init="between"))
    assert between.init_loc == (0.0, 0.0, 0.0)
    odd = make_target("mixture", _spec(init="between"))  # 3 modes at -4, 0, 4: between the middle and -4
    assert odd.init_loc == (-2.0, 0.0, 0.0)
    ring = make_target("mixture", _spec(layout="ring", n_modes=6, mode_weights=(), init="between"))
    c = ring.mixture.centres
    assert torch.allclose(torch.tensor(ring.init_loc, dtype=torch.float64), 0.5 * (c[0] + c[1]))
    far = make_target("mixture", _spec(init="far"))
    assert far.init_loc == pytest.approx((0.0, 4.0 + FAR_SEPARATIONS * sep, 0.0))
    assert float((far.mixture.centres - torch.tensor(far.init_loc, dtype=torch.float64)).norm(dim=1).min()) >= 2 * sep
    collapsed = make_target("mixture", _spec(init="collapsed"))
    assert collapsed.init_loc == (-4.0, 0.0, 0.0)  # weight 0.5: the first mode
    x0 = collapsed.init(20000, g).double()
    assert torch.allclose(x0.mean(0), torch.tensor([-4.0, 0.0, 0.0], dtype=torch.float64), atol=0.02)
    assert torch.allclose(x0.std(0), torch.full((3,), std, dtype=torch.float64), atol=0.01)
    imb = make_target("mixture", _spec(n_modes=2, mode_weights=(), init="imbalanced", init_weights=(4.0, 1.0)))
    assert imb.init_loc is None
    out = mode_metrics(imb.init(20000, g), imb.mixture)
    assert out["mode_mass_error"] == pytest.approx(0.3, abs=0.015)
    default = make_target("mixture", _spec()).init(20000, g)
    assert default.mean().abs() < 0.02 and (default.std(0) - 1.0).abs().max() < 0.02
    with pytest.raises(ValueError, match="init_weights"):
        make_target("mixture", _spec(init="imbalanced"))


def test_config_keys_and_rules() -> None:
    """The mixture keys validate, round-trip (empty weight lists included) and reach the target."""
    cfg = TrialConfig.from_dict({"target": "mixture", "dim": 5, "n_modes": 4, "layout": "grid", "separation": 2,
                                 "mode_std": 0.2, "mode_weights": [1, 1, 1, 2], "init": "imbalanced",
                                 "init_weights": [0.7, 0.1, 0.1, 0.1]})
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["mode_weights"] == [1.0, 1.0, 1.0, 2.0]
    assert TrialConfig().replace(seed=1).mode_weights == ()
    target = build_target(cfg)
    assert target.dim == 5 and target.mixture.centres.shape == (4, 5) and target.mixture.std == 0.2
    assert torch.allclose(target.mixture.weights, torch.tensor([0.2, 0.2, 0.2, 0.4], dtype=torch.float64))
    bad = [
        ({"dim": 17}, "'dim' = 17 out of range"),
        ({"separation": 0}, "'separation'"),
        ({"layout": "ring", "dim": 1}, "'layout'"),
        ({"layout": "grid", "n_modes": 3}, "'n_modes'"),
        ({"mode_weights": [1.0]}, "'mode_weights'"),
        ({"mode_weights": [1.0, -1.0]}, "'mode_weights'"),
        ({"init": "imbalanced"}, "'init_weights'"),
        ({"init": "sideways"}, "key 'init': unknown value"),
    ]
    for raw, needle in bad:
        with pytest.raises(ConfigError, match=needle):
            TrialConfig.from_dict({"target": "mixture", **raw})
    with pytest.raises(ConfigError, match="'init'"):
        TrialConfig.from_dict({"target": "torus1d", "init": "far"})
    with pytest.raises(ConfigError, match="'bandwidth_scales'"):
        TrialConfig.from_dict({"bandwidth_scales": []})  # empty lists stay an error elsewhere


@pytest.mark.parametrize("model", ["particles", "mlp"])
def test_trial_runs_on_a_mixture(model: str) -> None:
    """Particles and a generator fit the same 4-D mixture for a few steps; the generator starts at init_loc."""
    cfg = TrialConfig.from_dict({"target": "mixture", "dim": 4, "n_modes": 3, "init": "far", "model": model,
                                 "n_samples": 64, "n_data": 64, "n_eval": 64, "steps": 3, "eval_every": 1,
                                 "samples_kept": 0, "bandwidth": 2.0, "hidden": 16, "layers": 1})
    out = run_trial(cfg)
    assert out["status"] in ("censored", "converged") and out["steps_run"] >= 1
