"""Censored scaling-law fits: coefficient recovery, model selection, no deletion bias."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from analysis.fits import LAWS, fit_group, fit_law, select_law, tobit_fit

K = np.repeat([1, 2, 3, 4, 6, 8, 12, 16], 6).astype(float)
# (a, b, noise sd in the law's response): chosen so the three laws give T of comparable size
TRUE = {"exp_k2": (0.5, 0.02, 0.1), "power": (1.0, 1.2, 0.1), "log": (5.0, 4.0, 0.5)}


def synthetic(law_name: str, rng: np.random.Generator, censor_fraction: float = 0.0):
    """(K, observed T, event) from a law with Gaussian noise in its response; censored at one horizon."""
    law = LAWS[law_name]
    a, b, s = TRUE[law_name]
    y = a + b * law.regressor(K) + s * rng.standard_normal(K.size)
    t = np.exp(y) if law.log_response else y
    if censor_fraction == 0:
        return t, np.ones(K.size, bool)
    horizon = np.quantile(t, 1 - censor_fraction)  # a fixed step budget, like a real sweep
    return np.minimum(t, horizon), t <= horizon


@pytest.mark.parametrize("law_name", list(LAWS))
@pytest.mark.parametrize("censor_fraction", [0.0, 1 / 3])
def test_fit_recovers_coefficients_and_selects_generating_law(law_name, censor_fraction):
    rng = np.random.default_rng(7)
    t, event = synthetic(law_name, rng, censor_fraction)
    assert censor_fraction == 0 or abs((~event).mean() - censor_fraction) < 0.05
    fits = [fit_law(law, K, t, event) for law in LAWS.values()]
    assert all(f.ok for f in fits)
    assert select_law(fits, "aic") == law_name
    assert select_law(fits, "bic") == law_name
    f = next(f for f in fits if f.law == law_name)
    a, b, s = TRUE[law_name]
    assert f.b == pytest.approx(b, rel=0.1)
    assert f.a == pytest.approx(a, abs=max(0.1 * abs(a), 3 * s / np.sqrt(K.size)))
    assert f.sigma == pytest.approx(s, rel=0.35)
    assert f.n_censored == int((~event).sum())


def test_censored_fit_is_unbiased_where_deleting_censored_points_is_not():
    rng = np.random.default_rng(3)
    law = LAWS["log"]
    k = np.repeat([1, 2, 4, 8, 16], 8).astype(float)
    tobit, deleted, naive = [], [], []
    for _ in range(40):
        t = 5.0 + 4.0 * np.log(k) + 2.0 * rng.standard_normal(k.size)
        horizon = np.quantile(t, 2 / 3)
        event = t <= horizon
        t_obs = np.minimum(t, horizon)
        tobit.append(fit_law(law, k, t_obs, event).b)
        deleted.append(fit_law(law, k[event], t_obs[event], np.ones(event.sum(), bool)).b)
        naive.append(fit_law(law, k, t_obs, np.ones(k.size, bool)).b)  # censored taken as converged
    assert np.mean(tobit) == pytest.approx(4.0, rel=0.08)
    assert np.mean(deleted) < 0.85 * 4.0  # deletion keeps only the lucky fast trials at large K
    assert np.mean(naive) < 0.85 * 4.0
    assert abs(np.mean(tobit) - 4.0) < 0.5 * abs(np.mean(deleted) - 4.0)


def test_tobit_matches_a_direct_likelihood_maximisation():
    rng = np.random.default_rng(1)
    x = np.log(K)
    y = 1.0 + 1.5 * x + 0.3 * rng.standard_normal(K.size)
    c = y > np.quantile(y, 0.7)
    y_obs = np.where(c, np.quantile(y, 0.7), y)
    a, b, s, ll = tobit_fit(x, y_obs, c)

    def nll(p):
        mu, sd = p[0] + p[1] * x, np.exp(p[2])
        return -(stats.norm.logpdf(y_obs[~c], mu[~c], sd).sum() + stats.norm.logsf(y_obs[c], mu[c], sd).sum())

    ref = optimize.minimize(nll, [0.0, 1.0, 0.0], method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
    assert (a, b, np.log(s)) == pytest.approx(tuple(ref.x), abs=1e-4)
    assert ll == pytest.approx(-ref.fun, abs=1e-6)


def test_unidentified_fits_are_refused_with_a_reason():
    f = fit_law(LAWS["log"], [1, 1, 2, 2, 4, 4], [4, 4, 4, 4, 4, 4], [True, True, False, False, False, False])
    assert not f.ok and "distinct K" in f.reason
    assert not fit_law(LAWS["power"], [2, 2, 2], [1, 2, 3], [True] * 3).ok


def test_fit_group_bootstrap_over_seeds_covers_the_truth():
    rng = np.random.default_rng(11)
    t, event = synthetic("power", rng, 1 / 3)
    seeds = np.tile(np.arange(6), K.size // 6)
    table = fit_group(pd.DataFrame({"K": K, "T": t, "event": event, "seed": seeds}), n_boot=60, seed=0)
    best = table[table["best"]].iloc[0]
    assert best["law"] == "power" and best["boot_unit"] == "seed"
    assert best["b_lo"] <= TRUE["power"][1] <= best["b_hi"]
    assert best["a_lo"] < best["a"] < best["a_hi"]
    assert best["dT_per_doubling"] > 0 and best["ratio_per_doubling"] == pytest.approx(2 ** best["b"])
    assert best["best_support"] > 0.8
    # the Wald interval and the bootstrap interval should roughly agree on the slope's uncertainty
    assert 0.4 < (best["b_hi"] - best["b_lo"]) / (2 * 1.96 * best["b_se"]) < 2.5
    assert table["weight"].sum() == pytest.approx(1.0)
