"""Checks of the studies beyond K_max (docs/reproduction.md sections 8-11): what their tables say in numbers.

Pure computations on an `Analysis` that return Markdown lines; every interval is a bootstrap over seeds
(or cells and seeds, `analysis.stats`).  Used by `analysis.reproduction` as the studies' `checks`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .formatting import markdown
from .labels import fmt
from .stats import compare_groups, hierarchical_bootstrap, seed_bootstrap
from .tables import Analysis

N_BOOT = 400


def power_law(frame: pd.DataFrame, x: str, y: str) -> tuple[float, float, float]:
    """Slope b of log y = a + b log x by least squares over every trial, with its 95% t interval (n - 2 degrees
    of freedom: the scatter of the seeds and any lack of fit both widen it; rows with y <= 0 are left out)."""
    from scipy import stats

    frame = frame[(frame[y] > 0) & np.isfinite(frame[y])]
    if frame[x].nunique() < 2:
        return math.nan, math.nan, math.nan
    lx, ly = np.log(frame[x].to_numpy(float)), np.log(frame[y].to_numpy(float))
    fit = stats.linregress(lx, ly)
    if len(lx) < 3:
        return float(fit.slope), math.nan, math.nan
    half = stats.t.ppf(0.975, len(lx) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _variant_kind(variant: str) -> str:
    """'d=2 N=512 h(N)' -> 'h(N)'; the particles study's variants name dim, N and the bandwidth rule."""
    return variant.split(" ", 2)[-1]


def particles_check(analysis: Analysis) -> list[str]:
    """Study 10: the exponent of the equilibrium error in N, per dimension and bandwidth rule."""
    tr = analysis.sweep.trials
    tr = tr[tr["status"].isin(["converged", "censored"])].assign(rule=tr["variant"].map(_variant_kind))
    rows = []
    for (dim, rule), g in tr.groupby(["dim", "rule"]):
        for metric, label in (("final_sample_distance", "energy distance"),
                              ("final_mode_mass_error", "mode-mass error")):
            b, lo, hi = power_law(g, "n_samples", metric)
            rows.append({"dim": int(dim), "bandwidth": rule, "error": label, "exponent": b, "CI": f"[{fmt(lo, 3)}, "
                         f"{fmt(hi, 3)}]", "error at N=128": g[g["n_samples"] == 128][metric].mean(),
                         "error at N=1024": g[g["n_samples"] == 1024][metric].mean()})
    table = pd.DataFrame(rows)
    return ["The error at t = 40 (long past relaxation) against the number of particles N: the exponent b of "
            "error ~ N^b by least squares on log error over every trial, with its 95% t interval. "
            "i.i.d. samples would give b = -1 for the energy distance (a squared distance) and -1/2 for the "
            "mode-mass error.", "", markdown(table, digits=3), ""]


def _mean_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> str:
    """'mean [lo, hi]' with a seed bootstrap."""
    if len(values) == 0:
        return "-"
    _, lo, hi = seed_bootstrap(values, np.zeros(len(values)), n_boot, seed)
    return f"{fmt(values.mean(), 3)} [{fmt(lo, 3)}, {fmt(hi, 3)}]"


def dimension_check(analysis: Analysis, metric: str = "final_mode_mass_error") -> list[str]:
    """Study 9: the error at the budget per dimension, kernel and bandwidth; annealed against the best fixed h."""
    tr = analysis.sweep.trials
    tr = tr[tr["status"].isin(["converged", "censored"])]
    rows = []
    for (dim, kernel), g in tr.groupby(["dim", "kernel"]):
        row: dict = {"dim": int(dim), "kernel": kernel}
        means = {}
        for variant, v in g.groupby("variant"):
            values = v[metric].to_numpy(dtype=float)
            row[variant] = _mean_ci(values)
            means[variant] = values.mean()
        fixed = [v for v in means if v.startswith("fixed")]
        best = min(fixed, key=lambda v: means[v]) if fixed else None
        if best is not None and "annealed" in means:
            a = g[g["variant"] == best].assign(cell=0, value=g[metric])[["cell", "value"]]
            b = g[g["variant"] == "annealed"].assign(cell=0, value=g[metric])[["cell", "value"]]
            c = compare_groups(a, b, n_boot=N_BOOT)
            row["best fixed"] = best
            row["annealed - best fixed"] = f"{fmt(c['diff'], 3)} [{fmt(c['diff_lo'], 3)}, {fmt(c['diff_hi'], 3)}]"
            row["verdict"] = _verdict(c)
        rows.append(row)
    return [f"`{metric}` at the budget (t = 50), mean over seeds with a 95% bootstrap CI; the last columns compare "
            "the annealed schedule with the best fixed bandwidth of the row (negative: annealing is better; when "
            "the CI includes 0, the largest difference the data do not exclude).", "",
            markdown(pd.DataFrame(rows), digits=3), ""]


def _verdict(c: dict) -> str:
    """'annealed better' / 'fixed better' / 'not separable (|diff| < bound)'."""
    if not math.isfinite(c["diff_lo"]):
        return "-"
    if c["diff_hi"] < 0:
        return "annealed better"
    if c["diff_lo"] > 0:
        return "fixed better"
    return f"not separable (|diff| < {fmt(c['equivalence_bound'], 2)})"


def drift_label(variant: str) -> str:
    """'mean-shift joint annealed' -> 'mean-shift joint' (the operators study's variants end in the schedule)."""
    return variant.rsplit(" ", 1)[0]


def operators_check(analysis: Analysis, by: Sequence[str] = ("kernel",)) -> list[str]:
    """Study 11: per kernel, each drift's geometric-mean T over the cells (K_max x schedule) with a cells+seeds
    CI, its rank, and whether the data separate it from the kernel's best drift."""
    t = analysis.times
    tr = analysis.sweep.trials.set_index("trial_id")
    wall = tr["wall_time_s"]
    t = t[~t["failed"]].assign(drift=t["trial_id"].map(tr["variant"]).map(drift_label),
                               cell=t["trial_id"].map(lambda i: f"K={tr.loc[i, 'k_max']} {tr.loc[i, 'schedule']}"),
                               value=np.log(t["time"].astype(float)))
    rows = []
    for key, g in t.groupby(list(by)):
        per = {d: v[["cell", "value"]] for d, v in g.groupby("drift")}
        gm = {d: float(np.exp(v.groupby("cell")["value"].mean().mean())) for d, v in per.items()}
        best = min(gm, key=gm.get)
        for rank, d in enumerate(sorted(gm, key=gm.get), 1):
            _, lo, hi = hierarchical_bootstrap(per[d]["value"].to_numpy(), per[d]["cell"].to_numpy(), N_BOOT)
            c = compare_groups(per[best], per[d], n_boot=N_BOOT) if d != best else None
            rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "rank": rank, "drift": d,
                         "T (geo. mean)": f"{fmt(gm[d], 3)} [{fmt(math.exp(lo), 3)}, {fmt(math.exp(hi), 3)}]",
                         "censored": int((~g[g["drift"] == d]["event"]).sum()),
                         "wall s/trial": float(g[g["drift"] == d]["trial_id"].map(wall).median()),
                         "against the kernel's best": "-" if c is None else _ratio_verdict(c)})
    return ["Per kernel, every drift's geometric-mean time to eps over its four cells (K_max = 4, 8 x fixed, "
            "annealed), censored trials at their censoring time (a lower bound), with a cells+seeds 95% CI; "
            "against the kernel's best drift, the ratio of geometric means with its CI, or, where the CI includes "
            "1, the largest factor the data do not exclude; the median wall time of a trial (one CPU thread, a "
            "loaded machine).", "", markdown(pd.DataFrame(rows), digits=3), ""]


def _ratio_verdict(c: dict) -> str:
    """The difference of mean log T as a ratio: 'x1.8 [1.5, 2.2]' or 'within x1.3 (not separable)'."""
    if not math.isfinite(c["diff_lo"]):
        return "-"
    if c["diff_lo"] > 0:
        return f"x{fmt(math.exp(c['diff']), 3)} [{fmt(math.exp(c['diff_lo']), 3)}, {fmt(math.exp(c['diff_hi']), 3)}]"
    return f"not separable: within x{fmt(math.exp(c['equivalence_bound']), 3)}"


# final quality of a generator sweep: (column, label, direction); ratios to the data-vs-data floor where it has one
GENERATOR_QUALITY = (("sample_distance", "energy dist. / floor", "min"), ("sliced_w2", "sliced W2 / floor", "min"),
                     ("w2_exact", "W2^2 exact", "min"), ("modes_covered", "modes covered", "max"),
                     ("high_quality_share", "within 3 std", "max"), ("mode_mass_error", "mode-mass error", "min"),
                     ("frechet_distance", "Frechet dist. / floor", "min"), ("class_coverage", "class coverage", "max"))
RATIO_TO_FLOOR = ("sample_distance", "sliced_w2", "frechet_distance")  # shown as multiples of the data-vs-data floor


def generators_check(analysis: Analysis, by: Sequence[str] = ("kernel",)) -> list[str]:
    """Study 11c: per kernel, each drift's final quality (mean over seeds with a seed-bootstrap 95% CI), ranked
    by the energy distance to its floor, and the log-ratio of that distance against the kernel's best drift."""
    tr = analysis.sweep.trials
    tr = tr[tr["status"] != "error"].assign(drift=tr["variant"].fillna("all"))
    rows = []
    for key, g in tr.groupby(list(by)):
        cols = {}
        for name, label, _ in GENERATOR_QUALITY:
            final, floor = g.get(f"final_{name}"), g.get(f"{name}_floor")
            if final is None or final.isna().all():
                continue
            ratio = name in RATIO_TO_FLOOR and floor is not None and floor.notna().all()
            cols[label] = (final / floor) if ratio else final
        head = "energy dist. / floor"
        score = {d: float(np.log(cols[head][g["drift"] == d]).mean()) for d in g["drift"].unique()}
        best = min(score, key=score.get)
        ref = pd.DataFrame({"cell": 0, "value": np.log(cols[head][g["drift"] == best]).to_numpy()})
        for rank, d in enumerate(sorted(score, key=score.get), 1):
            mask = (g["drift"] == d).to_numpy()
            row = {**dict(zip(by, key if isinstance(key, tuple) else (key,))), "rank": rank, "drift": d}
            row.update({label: _mean_ci(col[mask].to_numpy(dtype=float)) for label, col in cols.items()})
            other = pd.DataFrame({"cell": 0, "value": np.log(cols[head][mask]).to_numpy()})
            row["against the kernel's best"] = "-" if d == best else _ratio_verdict(compare_groups(ref, other))
            row["wall s/trial"] = float(g.loc[mask, "wall_time_s"].median())
            rows.append(row)
    return ["Per kernel, every drift's final quality over its seeds (mean [95% CI], seed bootstrap): the energy "
            "distance and the sliced W2 as ratios to their data-vs-data floors (1 = as close as a second data "
            "draw), the exact W2^2 (POT, 1000 samples), and the mode metrics; ranked by the energy-distance ratio, "
            "and against the kernel's best drift the ratio of geometric means with its CI (or, where the CI "
            "includes 1, the largest factor the data do not exclude); the median wall time of a trial (one CPU "
            "thread, a loaded machine).", "", markdown(pd.DataFrame(rows), digits=3), ""]
