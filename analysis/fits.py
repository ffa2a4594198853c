"""Scaling laws of convergence time T against K_max (or any axis x), fitted with right-censoring (Tobit).

`LAWS` are the K_max study's three laws; `AXIS_LAWS` the four laws for any other axis (`laws_for`).
Each law is linear in (a, b) after transforming T and K; the noise is Gaussian in the law's response
(log T or T).  A censored trial (T > c) contributes log P(Y > g(c)) to the likelihood instead of a
density, so it enters as a lower bound (Tobit model), never deleted and never taken at face value.
Log-likelihoods are compared in T units (the log-response laws carry the Jacobian -sum log T over
observed points), so AIC/BIC across laws are comparable.  CIs: bootstrap over seeds (every trial of a
drawn seed kept; over trials within each K below `MIN_SEEDS_FOR_SEED_BOOTSTRAP` seeds), percentile or
expanded percentile (`ci_tail`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import special
from scipy.stats import t as student_t

from .tobit import tobit_fit, wald_se

MIN_SEEDS_FOR_SEED_BOOTSTRAP = 3
N_BOOT = 200  # bootstrap replicates per group
CI_LEVEL = 0.95
CI_METHODS = ("percentile", "expanded")  # see ci_tail; k_max keeps "percentile" (its pinned output)


@dataclass(frozen=True)
class Law:
    """T(K) linear in (a, b) after transforms: response(T) = a + b * regressor(K)."""

    name: str
    formula: str
    log_response: bool  # True: Gaussian noise on log T; False: on T
    regressor: Callable[[np.ndarray], np.ndarray]
    positive: bool = True  # the regressor needs K > 0 (log K); a group with K <= 0 gets no fit of this law

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

# any other axis x: the same fits, with the exponential law in x itself added (x may then be <= 0)
AXIS_LAWS: dict[str, Law] = {
    "exp_lin": Law("exp_lin", "log T = a + b x", True, lambda x: x, positive=False),
    "exp_x2": Law("exp_x2", "log T = a + b x^2", True, lambda x: x ** 2, positive=False),
    "power": Law("power", "log T = a + b log x", True, np.log),
    "log": Law("log", "T = a + b log x", False, np.log),
}
ALL_LAWS: dict[str, Law] = {**AXIS_LAWS, **LAWS}  # by name, for evaluating a fitted row (power/log agree)


def laws_for(axis: Optional[str]) -> dict[str, Law]:
    """The laws fitted against `axis`: the K_max study's three for k_max (so its output stays), else all four."""
    return LAWS if axis in (None, "k_max") else AXIS_LAWS


def ci_for(axis: Optional[str]) -> str:
    """The bootstrap interval for `axis`: "percentile" for k_max (its output is pinned), else "expanded"."""
    return "percentile" if axis in (None, "k_max") else "expanded"


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


def fit_law(law: Law, k: Sequence[float], t: Sequence[float], event: Sequence[bool], se: bool = False,
            symbol: str = "K") -> FitResult:
    """Fit one law to points (K, T, event); event False means T is a censoring time (T_true > T).

    With `se`, also the Wald standard errors of a and b (the bootstrap skips them).  `symbol` names the
    axis in the reason a fit was not made.
    """
    k = np.asarray(k, dtype=float)
    t = np.asarray(t, dtype=float)
    ev = np.asarray(event, dtype=bool)
    keep = np.isfinite(k) & np.isfinite(t) & (t > 0)
    k, t, ev = k[keep], t[keep], ev[keep]
    out = FitResult(law=law.name, n=int(k.size), n_censored=int((~ev).sum()))
    if law.positive and np.any(k <= 0):  # fitting the rest would make its AIC incomparable with the others'
        out.reason = f"needs {symbol} > 0"
        return out
    if k.size < 3 or np.unique(k).size < 2:
        out.reason = f"fewer than 3 points or 2 distinct {symbol}"
        return out
    if np.unique(k[ev]).size < 2:  # else the slope is not identified (the likelihood has no maximum)
        out.reason = f"converged trials at fewer than 2 distinct {symbol}"
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
    if not k_ref > 0:  # doubling a non-positive axis value is not a step up the axis
        return math.nan, math.nan
    t1, t2 = law.predict(a, b, np.array([k_ref, 2 * k_ref]))
    return float(t2 - t1), float(t2 / t1) if t1 > 0 else math.nan


def select_law(fits: Sequence[FitResult], criterion: str = "aic") -> Optional[str]:
    """Name of the law with the lowest AIC (or BIC) among the successful fits; None if none succeeded."""
    ok = [f for f in fits if f.ok]
    if not ok:
        return None
    return min(ok, key=lambda f: getattr(f, criterion)).law


def ci_tail(method: str, n_units: int, level: float = CI_LEVEL) -> float:
    """Lower tail probability of the bootstrap quantile that bounds a `level` interval.

    percentile: (1 - level) / 2.  expanded (Hesterberg's expanded percentile interval): the tail at
    z = sqrt(n / (n - 1)) t_{n-1, 1-(1-level)/2}, which undoes the two ways a bootstrap over n units runs
    short (its variance is (n - 1)/n of the truth's, and normal tails are thinner than Student's); with
    n < 2 units the tail is 0 (the interval is the replicates' range).
    """
    alpha = (1.0 - level) / 2
    if method == "percentile":
        return alpha
    if method != "expanded":
        raise ValueError(f"ci method {method!r}; methods: {', '.join(CI_METHODS)}")
    if n_units < 2:
        return 0.0
    return float(special.ndtr(-math.sqrt(n_units / (n_units - 1)) * student_t.ppf(1 - alpha, n_units - 1)))


def _resample_units(points: pd.DataFrame, unit: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """(unit values, row indices of each unit): seeds in first-seen order, or the rows at each K (sorted)."""
    if unit == "seed":
        seeds = points["seed"].unique()
        col = points["seed"].to_numpy()
        return seeds, [np.flatnonzero(col == s) for s in seeds]
    return np.array([]), [np.asarray(ix) for _, ix in sorted(points.groupby("K").indices.items())]


def _resample(units: tuple[np.ndarray, list[np.ndarray]], rng: np.random.Generator, unit: str) -> np.ndarray:
    """Row indices of one bootstrap replicate: drawn seeds with all their trials, or trials within each K."""
    values, rows = units
    if unit == "seed":
        draw = rng.choice(np.arange(values.size), size=values.size, replace=True)
        return np.concatenate([rows[i] for i in draw])
    return np.concatenate([ix[rng.integers(0, len(ix), size=len(ix))] for ix in rows])


def fit_group(points: pd.DataFrame, laws: Optional[dict[str, Law]] = None, n_boot: int = N_BOOT, seed: int = 0,
              criterion: str = "aic", k_ref: Optional[float] = None, symbol: str = "K",
              ci: str = "percentile") -> pd.DataFrame:
    """Fit every law to one group's points (columns K, T, event, seed); one row per law.

    Columns: law, formula, a, b, sigma, loglik, a_se, b_se (Wald), aic, bic, delta_aic, weight (Akaike), n, n_censored,
    ok, reason, best, k_ref, dT_per_doubling, ratio_per_doubling, their bootstrap CIs (`_lo`/`_hi`),
    `boot_unit` and `best_support` (the fraction of bootstrap replicates selecting this law).  `ci`: the
    bootstrap interval, "percentile" or "expanded" (`ci_tail`).
    """
    laws = laws or LAWS
    points = points[["K", "T", "event", "seed"]].dropna(subset=["K", "T"]).reset_index(drop=True)
    k_ref = float(points["K"].max()) if k_ref is None and len(points) else k_ref
    fits = [fit_law(law, points["K"], points["T"], points["event"], se=True, symbol=symbol) for law in laws.values()]
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
    n_units = points["seed"].nunique() if unit == "seed" else int(points.groupby("K").size().min())
    _bootstrap(table, points, laws, n_boot, seed, criterion, k_ref, unit, ci_tail(ci, n_units))
    return table


def _bootstrap(table: pd.DataFrame, points: pd.DataFrame, laws: dict[str, Law], n_boot: int, seed: int,
               criterion: str, k_ref: float, unit: str, alpha: float) -> None:
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
    units = _resample_units(points, unit)
    k, t, ev = (points[c].to_numpy() for c in ("K", "T", "event"))
    for _ in range(n_boot):
        ix = _resample(units, rng, unit)
        fits = [fit_law(law, k[ix], t[ix], ev[ix]) for law in laws.values()]
        chosen.append(select_law(fits, criterion))
        for f in fits:
            if f.ok:
                draws[f.law].append((f.a, f.b, per_doubling(laws[f.law], f.a, f.b, k_ref)[0]))
    for i, name in enumerate(table["law"]):
        d = np.array(draws[name])
        if len(d) >= max(10, n_boot // 4):
            for j, c in enumerate(stats_cols):
                table.loc[i, f"{c}_lo"], table.loc[i, f"{c}_hi"] = np.quantile(d[:, j], [alpha, 1 - alpha])
        table.loc[i, "best_support"] = sum(c == name for c in chosen) / n_boot


def fit_scaling(times: pd.DataFrame, keys: Sequence[str], axis: str = "k_max", laws: Optional[dict[str, Law]] = None,
                n_boot: int = N_BOOT, seed: int = 0, criterion: str = "aic",
                ci: Optional[str] = None) -> pd.DataFrame:
    """Fit every law per group of `keys` to a convergence_times() table; one row per group x law.

    Failed trials (diverged/error) are left out; censored ones enter as lower bounds.  `laws` defaults to
    `laws_for(axis)`, `ci` to `ci_for(axis)`.
    """
    ci = ci or ci_for(axis)
    laws = laws or laws_for(axis)
    symbol = "K" if axis == "k_max" else "x"
    ok = times[~times["failed"]]
    rows = []
    grouped = ok.groupby(list(keys), sort=True, dropna=False) if keys else [((), ok)]
    for name, g in grouped:
        name = name if isinstance(name, tuple) else (name,)
        pts = pd.DataFrame({"K": g[axis].astype(float), "T": g["time"], "event": g["event"], "seed": g["seed"]})
        fit = fit_group(pts, laws, n_boot, seed, criterion, symbol=symbol, ci=ci)
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
    laws = laws or ALL_LAWS
    rows = []
    for _, f in fits[fits["ok"]].iterrows():
        t = laws[f["law"]].predict(f["a"], f["b"], k_grid)
        rows.append(pd.DataFrame({"group": f["group"], "law": f["law"], "best": f["best"], "K": k_grid, "T": t}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["group", "law", "best", "K", "T"])
