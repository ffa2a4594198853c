"""Scaling laws of convergence time T against K_max, fitted with right-censoring (Tobit).

Each law is linear in (a, b) after transforming T and K; the noise is Gaussian in the law's response
(log T or T).  A censored trial (T > c) contributes log P(Y > g(c)) to the likelihood instead of a
density, so it enters as a lower bound (Tobit model), never deleted and never taken at face value.
Log-likelihoods are compared in T units (the log-response laws carry the Jacobian -sum log T over
observed points), so AIC/BIC across laws are comparable.  Confidence intervals: percentile
bootstrap over seeds (every trial of a drawn seed is kept), or over trials within each K when the
group has fewer than `MIN_SEEDS_FOR_SEED_BOOTSTRAP` seeds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import special

MIN_SEEDS_FOR_SEED_BOOTSTRAP = 3
N_BOOT = 200  # bootstrap replicates per group
CI_LEVEL = 0.95
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class Law:
    """T(K) linear in (a, b) after transforms: response(T) = a + b * regressor(K)."""

    name: str
    formula: str
    log_response: bool  # True: Gaussian noise on log T; False: on T
    regressor: Callable[[np.ndarray], np.ndarray]

    def response(self, t: np.ndarray) -> np.ndarray:
        """g(T): log T or T."""
        return np.log(t) if self.log_response else np.asarray(t, dtype=float)

    def predict(self, a: float, b: float, k: np.ndarray) -> np.ndarray:
        """Median T at K (the mean of the response mapped back)."""
        mu = a + b * self.regressor(np.asarray(k, dtype=float))
        return np.exp(mu) if self.log_response else mu


LAWS: dict[str, Law] = {
    "exp_k2": Law("exp_k2", "log T = a + b K^2", True, lambda k: k ** 2),
    "power": Law("power", "log T = a + b log K", True, np.log),
    "log": Law("log", "T = a + b log K", False, np.log),
}


@dataclass
class FitResult:
    """One law fitted to one group's (K, T, event) points."""

    law: str
    a: float = math.nan
    b: float = math.nan
    sigma: float = math.nan
    loglik: float = math.nan  # in T units (comparable across laws)
    aic: float = math.nan
    bic: float = math.nan
    a_se: float = math.nan  # Wald standard errors (inverse observed information)
    b_se: float = math.nan
    n: int = 0
    n_censored: int = 0
    ok: bool = False
    reason: str = ""


_GAMMA_SCALE = 1e3  # soft cap on 1/sigma (standardised units): a perfect fit keeps a finite likelihood


def _loglik(theta: np.ndarray, x: np.ndarray, y: np.ndarray, cens: np.ndarray, derivs: bool = True):
    """Tobit log-likelihood in Olsen's parameters theta = (a/sigma, b/sigma, 1/sigma), where it is concave.

    Observed y: log gamma - (gamma y - delta.x)^2 / 2 (dropping -log(2 pi)/2); right-censored at y:
    log Phi(delta.x - gamma y).  Returns (value, gradient, Hessian) or the value alone.
    """
    da, db, g = theta
    obs = ~cens
    r = g * y[obs] - da - db * x[obs]
    w = da + db * x[cens] - g * y[cens]
    log_cdf = special.log_ndtr(w)
    val = obs.sum() * math.log(g) - 0.5 * np.sum(r ** 2) + np.sum(log_cdf) - 0.5 * (g / _GAMMA_SCALE) ** 2
    if not derivs:
        return val
    m = np.exp(-0.5 * w ** 2 - _HALF_LOG_2PI - log_cdf)  # pdf / cdf (inverse Mills ratio)
    q = m * (w + m)
    xo, yo, xc, yc = x[obs], y[obs], x[cens], y[cens]
    grad = np.array([
        np.sum(r) + np.sum(m),
        np.sum(r * xo) + np.sum(m * xc),
        obs.sum() / g - np.sum(r * yo) - np.sum(m * yc) - g / _GAMMA_SCALE ** 2,
    ])
    h = np.empty((3, 3))
    h[0, 0] = -obs.sum() - np.sum(q)
    h[0, 1] = h[1, 0] = -np.sum(xo) - np.sum(q * xc)
    h[1, 1] = -np.sum(xo ** 2) - np.sum(q * xc ** 2)
    h[0, 2] = h[2, 0] = np.sum(yo) + np.sum(q * yc)
    h[1, 2] = h[2, 1] = np.sum(xo * yo) + np.sum(q * xc * yc)
    h[2, 2] = -obs.sum() / g ** 2 - np.sum(yo ** 2) - np.sum(q * yc ** 2) - 1.0 / _GAMMA_SCALE ** 2
    return val, grad, h


def _newton(theta: np.ndarray, x: np.ndarray, y: np.ndarray, cens: np.ndarray, iters: int = 200) -> np.ndarray:
    """Damped Newton ascent of the concave Tobit log-likelihood, keeping 1/sigma > 0."""
    val, grad, h = _loglik(theta, x, y, cens)
    for _ in range(iters):
        try:
            step = -np.linalg.solve(h - 1e-12 * np.eye(3), grad)
        except np.linalg.LinAlgError:
            step = grad
        t = 1.0
        while t > 1e-10:
            cand = theta + t * step
            if cand[2] > 0:
                cv = _loglik(cand, x, y, cens, derivs=False)
                if np.isfinite(cv) and cv >= val - 1e-12:
                    break
            t *= 0.5
        else:
            break
        theta = cand
        new_val, grad, h = _loglik(theta, x, y, cens)
        done = (abs(new_val - val) < 1e-10 * (1 + abs(val))
                and np.max(np.abs(t * step)) < 1e-8 * (1 + np.max(np.abs(theta))))
        val = new_val
        if done:
            break
    return theta


def tobit_fit(x: np.ndarray, y: np.ndarray, censored: np.ndarray) -> tuple[float, float, float, float]:
    """Max-likelihood (a, b, sigma, loglik) of y = a + b x + N(0, sigma^2), y right-censored where `censored`."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cens = np.asarray(censored, dtype=bool)
    mx, sx = x.mean(), x.std() or 1.0
    my, sy = y.mean(), y.std() or 1.0
    xs, ys = (x - mx) / sx, (y - my) / sy  # standardised for conditioning
    b0, a0 = np.polyfit(xs, ys, 1)
    s0 = max(float(np.std(ys - a0 - b0 * xs)), 0.05)
    da, db, g = _newton(np.array([a0 / s0, b0 / s0, 1.0 / s0]), xs, ys, cens)
    a_s, b_s, s_s = da / g, db / g, 1.0 / g
    b = b_s * sy / sx
    a = my + sy * a_s - b * mx
    sigma = s_s * sy
    # exact log-likelihood of y (with the constant and the standardisation's Jacobian, without the soft cap)
    loglik = _loglik(np.array([da, db, g]), xs, ys, cens, derivs=False) + 0.5 * (g / _GAMMA_SCALE) ** 2
    loglik += -(~cens).sum() * (_HALF_LOG_2PI + math.log(sy))
    return float(a), float(b), float(sigma), float(loglik)


def _loglik_ab(theta: np.ndarray, x: np.ndarray, y: np.ndarray, cens: np.ndarray) -> float:
    """Tobit log-likelihood of y in the usual parameters (a, b, log sigma)."""
    a, b, log_s = theta
    s = math.exp(log_s)
    z = (y - a - b * x) / s
    return float(np.sum(-0.5 * z[~cens] ** 2 - _HALF_LOG_2PI - log_s) + np.sum(special.log_ndtr(-z[cens])))


def wald_se(x: np.ndarray, y: np.ndarray, cens: np.ndarray, a: float, b: float, sigma: float) -> tuple[float, float]:
    """Standard errors of (a, b) from the observed information (central-difference Hessian) at the MLE."""
    theta = np.array([a, b, math.log(sigma)])
    h = 1e-4 * (1.0 + np.abs(theta))
    hess = np.empty((3, 3))
    for i in range(3):
        for j in range(i, 3):
            ei, ej = np.eye(3)[i] * h[i], np.eye(3)[j] * h[j]
            f = [_loglik_ab(theta + si * ei + sj * ej, x, y, cens) for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
            hess[i, j] = hess[j, i] = (f[0] - f[1] - f[2] + f[3]) / (4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        return math.nan, math.nan
    d = np.diag(cov)
    if not np.all(np.isfinite(d[:2])) or np.any(d[:2] <= 0):
        return math.nan, math.nan
    return float(math.sqrt(d[0])), float(math.sqrt(d[1]))


def fit_law(law: Law, k: Sequence[float], t: Sequence[float], event: Sequence[bool], se: bool = False) -> FitResult:
    """Fit one law to points (K, T, event); event False means T is a censoring time (T_true > T).

    With `se`, also the Wald standard errors of a and b (the bootstrap skips them).
    """
    k = np.asarray(k, dtype=float)
    t = np.asarray(t, dtype=float)
    ev = np.asarray(event, dtype=bool)
    keep = np.isfinite(k) & np.isfinite(t) & (k > 0) & (t > 0)
    k, t, ev = k[keep], t[keep], ev[keep]
    out = FitResult(law=law.name, n=int(k.size), n_censored=int((~ev).sum()))
    if k.size < 3 or np.unique(k).size < 2:
        out.reason = "fewer than 3 points or 2 distinct K"
        return out
    if np.unique(k[ev]).size < 2:  # else the slope is not identified (the likelihood has no maximum)
        out.reason = "converged trials at fewer than 2 distinct K"
        return out
    x, y = law.regressor(k), law.response(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a, b, sigma, ll_y = tobit_fit(x, y, ~ev)
    ll = ll_y - (np.sum(np.log(t[ev])) if law.log_response else 0.0)  # density of T, not of log T
    p = 3  # a, b, sigma
    out.a, out.b, out.sigma, out.loglik = a, b, sigma, float(ll)
    out.aic = 2 * p - 2 * ll
    out.bic = p * math.log(k.size) - 2 * ll
    out.ok = bool(np.isfinite(ll))
    if se and out.ok:
        out.a_se, out.b_se = wald_se(x, y, ~ev, a, b, sigma)
    return out


def per_doubling(law: Law, a: float, b: float, k_ref: float) -> tuple[float, float]:
    """(T(2 K_ref) - T(K_ref), T(2 K_ref) / T(K_ref)) under the law: what one doubling of K_max costs."""
    t1, t2 = law.predict(a, b, np.array([k_ref, 2 * k_ref]))
    return float(t2 - t1), float(t2 / t1) if t1 > 0 else math.nan


def select_law(fits: Sequence[FitResult], criterion: str = "aic") -> Optional[str]:
    """Name of the law with the lowest AIC (or BIC) among the successful fits; None if none succeeded."""
    ok = [f for f in fits if f.ok]
    if not ok:
        return None
    return min(ok, key=lambda f: getattr(f, criterion)).law


def _resample(points: pd.DataFrame, rng: np.random.Generator, unit: str) -> pd.DataFrame:
    if unit == "seed":
        seeds = points["seed"].unique()
        draw = rng.choice(seeds, size=seeds.size, replace=True)
        return pd.concat([points[points["seed"] == s] for s in draw], ignore_index=True)
    parts = []
    for _, g in points.groupby("K"):
        parts.append(g.iloc[rng.integers(0, len(g), size=len(g))])
    return pd.concat(parts, ignore_index=True)


def fit_group(points: pd.DataFrame, laws: Optional[dict[str, Law]] = None, n_boot: int = N_BOOT, seed: int = 0,
              criterion: str = "aic", k_ref: Optional[float] = None) -> pd.DataFrame:
    """Fit every law to one group's points (columns K, T, event, seed); one row per law.

    Columns: law, formula, a, b, sigma, loglik, a_se, b_se (Wald), aic, bic, delta_aic, weight (Akaike), n, n_censored,
    ok, reason, best, k_ref, dT_per_doubling, ratio_per_doubling, their bootstrap CIs (`_lo`/`_hi`),
    `boot_unit` and `best_support` (the fraction of bootstrap replicates selecting this law).
    """
    laws = laws or LAWS
    points = points[["K", "T", "event", "seed"]].dropna(subset=["K", "T"]).reset_index(drop=True)
    k_ref = float(points["K"].max()) if k_ref is None and len(points) else k_ref
    fits = [fit_law(law, points["K"], points["T"], points["event"], se=True) for law in laws.values()]
    best = select_law(fits, criterion)
    rows = []
    for f in fits:
        row = {"law": f.law, "formula": laws[f.law].formula, **{k: v for k, v in asdict(f).items() if k != "law"}}
        row["k_ref"] = k_ref
        row["dT_per_doubling"], row["ratio_per_doubling"] = (
            per_doubling(laws[f.law], f.a, f.b, k_ref) if f.ok else (math.nan, math.nan))
        rows.append(row)
    table = pd.DataFrame(rows)
    ok = table["ok"]
    crit = table[criterion].where(ok)
    table["delta_aic"] = table["aic"] - table["aic"].where(ok).min()
    rel = np.exp(-0.5 * (crit - crit.min()))
    table["weight"] = rel / rel.sum() if ok.any() else np.nan
    table["best"] = table["law"] == best
    unit = "seed" if points["seed"].nunique() >= MIN_SEEDS_FOR_SEED_BOOTSTRAP else "trial"
    table["boot_unit"] = unit
    _bootstrap(table, points, laws, n_boot, seed, criterion, k_ref, unit)
    return table


def _bootstrap(table: pd.DataFrame, points: pd.DataFrame, laws: dict[str, Law], n_boot: int, seed: int,
               criterion: str, k_ref: float, unit: str) -> None:
    """Add percentile CIs of a, b, dT_per_doubling and the best-law support to `table` (in place)."""
    stats_cols = ("a", "b", "dT_per_doubling")
    for c in stats_cols:
        table[f"{c}_lo"] = np.nan
        table[f"{c}_hi"] = np.nan
    table["best_support"] = np.nan
    if n_boot <= 0 or not table["ok"].any():
        return
    rng = np.random.default_rng(seed)
    draws: dict[str, list[tuple[float, float, float]]] = {name: [] for name in laws}
    chosen: list[Optional[str]] = []
    for _ in range(n_boot):
        sample = _resample(points, rng, unit)
        fits = [fit_law(law, sample["K"], sample["T"], sample["event"]) for law in laws.values()]
        chosen.append(select_law(fits, criterion))
        for f in fits:
            if f.ok:
                draws[f.law].append((f.a, f.b, per_doubling(laws[f.law], f.a, f.b, k_ref)[0]))
    alpha = (1.0 - CI_LEVEL) / 2
    for i, name in enumerate(table["law"]):
        d = np.array(draws[name])
        if len(d) >= max(10, n_boot // 4):
            for j, c in enumerate(stats_cols):
                table.loc[i, f"{c}_lo"], table.loc[i, f"{c}_hi"] = np.quantile(d[:, j], [alpha, 1 - alpha])
        table.loc[i, "best_support"] = sum(c == name for c in chosen) / n_boot


def fit_scaling(times: pd.DataFrame, keys: Sequence[str], axis: str = "k_max", laws: Optional[dict[str, Law]] = None,
                n_boot: int = N_BOOT, seed: int = 0, criterion: str = "aic") -> pd.DataFrame:
    """Fit every law per group of `keys` to a convergence_times() table; one row per group x law.

    Failed trials (diverged/error) are left out; censored ones enter as lower bounds.
    """
    ok = times[~times["failed"]]
    rows = []
    grouped = ok.groupby(list(keys), sort=True, dropna=False) if keys else [((), ok)]
    for name, g in grouped:
        name = name if isinstance(name, tuple) else (name,)
        pts = pd.DataFrame({"K": g[axis].astype(float), "T": g["time"], "event": g["event"], "seed": g["seed"]})
        fit = fit_group(pts, laws, n_boot, seed, criterion)
        for k, v in zip(keys, name):
            fit[k] = [v] * len(fit)
        fit["group"] = g["group"].iloc[0]
        rows.append(fit)
    if not rows:
        return pd.DataFrame()
    out = pd.concat(rows, ignore_index=True)
    lead = [*keys, "group", "law"]
    return out[lead + [c for c in out.columns if c not in lead]]


def law_curve(fits: pd.DataFrame, k_grid: np.ndarray, laws: Optional[dict[str, Law]] = None) -> pd.DataFrame:
    """Long table (group, law, best, K, T) of the fitted laws evaluated on `k_grid`, for plotting."""
    laws = laws or LAWS
    rows = []
    for _, f in fits[fits["ok"]].iterrows():
        t = laws[f["law"]].predict(f["a"], f["b"], k_grid)
        rows.append(pd.DataFrame({"group": f["group"], "law": f["law"], "best": f["best"], "K": k_grid, "T": t}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["group", "law", "best", "K", "T"])
