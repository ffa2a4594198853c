"""Statistics for ablations: hierarchical bootstrap CIs, two-group differences, equivalence bounds, seeds needed.

Pure functions on arrays and tables.  The data of one group are *cells* (the conditions it ran: one per
value of the scaling axis, or one cell when there is none) holding *seeds* (replicate trials).  The group's
statistic is the mean over its cells of the cell means, each cell weighted equally.

Two bootstrap CIs of it, side by side:

- **seeds** (`seed_bootstrap`): the cells are held fixed and seeds are resampled within each cell: the
  uncertainty about these exact conditions, the kind of CI the rest of the report uses.
- **cells + seeds** (`hierarchical_bootstrap`): cells are resampled with replacement, then seeds within each
  drawn cell: the uncertainty about conditions like these.  Resampling both levels counts the seed spread
  twice (once inside the resampled cell means, once more within cells), so it is slightly conservative:
  its variance is about tau^2 / C + 2 s^2 / (n C) for a cell spread tau, a seed spread s, C cells of n seeds,
  against tau^2 / C + s^2 / (n C) for the truth.

A two-group comparison (`compare_groups`) is paired by cell when the groups share cells (the draw of
cells is the same for both, the seeds are drawn per group): difference = mean over shared cells of
(group b's cell mean - group a's).  When its CI includes zero, `equivalence_bound` is the largest
|difference| the data do not exclude: max(|lo|, |hi|); differences beyond it are excluded at the CI's
level (each side is a one-sided 97.5 % bound for a 95 % CI).  `seeds_needed` is the number of seeds per
cell and group for a two-sided test at level alpha to detect the observed difference with the given power,
by the normal approximation n = 2 (z_{1-alpha/2} + z_power)^2 s^2 / (C d^2), s the pooled within-cell
standard deviation, d the difference, C the shared cells.

`mean_ci` is the plain mean of independent replicates (one configuration's seeds) with a Student-t interval:
with three seeds a percentile bootstrap stays inside the range of three values and covers too rarely.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional, Sequence

import numpy as np
import pandas as pd

N_BOOT = 1000  # replicates: cheap here (vectorised), and the tails of a 95 % CI need several hundred
CI_LEVEL = 0.95
ALPHA = 0.05  # two-sided test level for seeds_needed
POWER = 0.8


def _cells(values: Sequence[float], cells: Sequence) -> list[np.ndarray]:
    """The finite values grouped by cell, in sorted cell order (cells without finite values dropped)."""
    df = pd.DataFrame({"cell": list(cells), "v": np.asarray(values, dtype=float)})
    df = df[np.isfinite(df["v"])]
    return [g["v"].to_numpy() for _, g in df.groupby("cell", sort=True)]


def _boot_means(cells: list[np.ndarray], draw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per replicate (rows of `draw`, cell indices per slot): the mean over slots of each drawn cell's mean
    after resampling its values with replacement (independently for every slot)."""
    flat = np.asarray(draw).ravel()
    slot_means = np.empty(flat.size)
    for c, v in enumerate(cells):
        where = np.flatnonzero(flat == c)
        if where.size:
            slot_means[where] = v[rng.integers(0, v.size, size=(where.size, v.size))].mean(axis=1)
    return slot_means.reshape(np.shape(draw)).mean(axis=1)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return float(lo), float(hi)


def cell_mean(values: Sequence[float], cells: Sequence) -> float:
    """The mean over cells of the cell means (each cell weighted equally)."""
    groups = _cells(values, cells)
    return float(np.mean([g.mean() for g in groups])) if groups else math.nan


def _bootstrap(values: Sequence[float], cells: Sequence, n_boot: int, seed: int, level: float,
               resample_cells: bool) -> tuple[float, float, float]:
    """(mean of cell means, lo, hi): percentile CI resampling values within cells, and the cells too if asked."""
    groups = _cells(values, cells)
    est = float(np.mean([g.mean() for g in groups])) if groups else math.nan
    if not groups or n_boot <= 0:
        return est, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draw = (rng.integers(0, len(groups), size=(n_boot, len(groups))) if resample_cells
            else np.broadcast_to(np.arange(len(groups)), (n_boot, len(groups))))
    return (est, *_interval(_boot_means(groups, draw, rng), level))


def hierarchical_bootstrap(values: Sequence[float], cells: Sequence, n_boot: int = N_BOOT, seed: int = 0,
                           level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(mean of cell means, lo, hi): percentile CI from resampling cells, then values within each drawn cell."""
    return _bootstrap(values, cells, n_boot, seed, level, resample_cells=True)


def seed_bootstrap(values: Sequence[float], cells: Sequence, n_boot: int = N_BOOT, seed: int = 0,
                   level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(mean of cell means, lo, hi): percentile CI from resampling values within each cell, the cells held fixed."""
    return _bootstrap(values, cells, n_boot, seed, level, resample_cells=False)


def mean_ci(values: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float, float]:
    """(mean, lo, hi) of the finite values with a Student-t interval; NaN bounds for one value, all NaN for none."""
    from scipy import stats as scipy_stats  # only when called: the bootstrap functions need no scipy

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size == 1:
        return m, math.nan, math.nan
    half = float(scipy_stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def pooled_sd(*groups: Sequence[np.ndarray]) -> float:
    """Pooled within-cell standard deviation over every cell of every group (cells of one value add nothing)."""
    cells = [np.asarray(c, float) for g in groups for c in g if len(c) > 1]
    dof = sum(c.size - 1 for c in cells)
    if dof == 0:
        return math.nan
    return float(math.sqrt(sum(((c - c.mean()) ** 2).sum() for c in cells) / dof))


def equivalence_bound(lo: float, hi: float) -> float:
    """When the CI [lo, hi] of a difference includes zero: max(|lo|, |hi|), the largest |difference| the data
    do not exclude; NaN when the CI excludes zero (the groups differ) or is undefined."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > 0 or hi < 0:
        return math.nan
    return float(max(abs(lo), abs(hi)))


def seeds_needed(diff: float, sd: float, cells: int = 1, alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds per cell and group to detect a difference `diff` at spread `sd` over `cells` paired cells:
    ceil(2 (z_{1-alpha/2} + z_power)^2 sd^2 / (cells diff^2)), at least 2 (a spread needs two); inf when
    diff is 0, NaN when undefined."""
    if not (np.isfinite(diff) and np.isfinite(sd)) or cells < 1:
        return math.nan
    if diff == 0:
        return math.inf
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return float(max(2, math.ceil(2 * z ** 2 * sd ** 2 / (cells * diff ** 2))))


def compare_groups(a: pd.DataFrame, b: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0,
                   level: float = CI_LEVEL) -> dict:
    """b minus a for two groups' tables (columns cell, value): difference of cell means over their shared cells
    with a cells+seeds bootstrap CI (paired by cell), equivalence bound, pooled spread and seeds needed.

    Without shared cells the groups are compared unpaired over all their cells (each resampled on its own).
    """
    shared = sorted(set(a["cell"]) & set(b["cell"]))
    paired = bool(shared)
    if paired:
        a, b = a[a["cell"].isin(shared)], b[b["cell"].isin(shared)]
    ga, gb = _cells(a["value"], a["cell"]), _cells(b["value"], b["cell"])
    out = {"cells": len(shared) if paired else min(len(ga), len(gb)), "paired": paired, "diff": math.nan,
           "diff_lo": math.nan, "diff_hi": math.nan, "equivalence_bound": math.nan, "sd": pooled_sd(ga, gb),
           "seeds_needed": math.nan}
    if not ga or not gb or (paired and len(ga) != len(gb)):  # a shared cell without finite values on one side
        return out
    out["diff"] = float(np.mean([y.mean() for y in gb]) - np.mean([x.mean() for x in ga]))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        da = rng.integers(0, len(ga), size=(n_boot, len(ga)))
        db = da if paired else rng.integers(0, len(gb), size=(n_boot, len(gb)))
        out["diff_lo"], out["diff_hi"] = _interval(_boot_means(gb, db, rng) - _boot_means(ga, da, rng), level)
        out["equivalence_bound"] = equivalence_bound(out["diff_lo"], out["diff_hi"])
    out["seeds_needed"] = seeds_needed(out["diff"], out["sd"], out["cells"])
    return out


def group_statistics(times: pd.DataFrame, axis: Optional[str], order: Sequence[str], baseline: str,
                     n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per group of a convergence_times() table: the geometric-mean T (the mean of log T over cells, each
    cell a value of `axis`) with its seeds and cells+seeds CIs, and against `baseline` the ratio of geometric
    means with its CI, the equivalence factor (when the CI includes 1) and the seeds needed per cell.

    Censored trials enter at their censoring time, a lower bound (`censored` counts them); failed ones not at all.
    """
    t = times[~times["failed"] & (times["time"] > 0)]
    data = pd.DataFrame({"group": t["group"], "cell": t[axis] if axis else 0.0, "value": np.log(t["time"]),
                         "censored": t["censored"]})
    base = data[data["group"] == baseline]
    rows = []
    for g in order:
        d = data[data["group"] == g]
        est, s_lo, s_hi = seed_bootstrap(d["value"], d["cell"], n_boot, seed)
        _, h_lo, h_hi = hierarchical_bootstrap(d["value"], d["cell"], n_boot, seed)
        row = {"group": g, "cells": int(d["cell"].nunique()), "trials": len(d), "censored": int(d["censored"].sum()),
               "T_geo": math.exp(est) if np.isfinite(est) else math.nan}
        row["T_geo_lo"], row["T_geo_hi"] = np.exp([s_lo, s_hi])
        row["T_geo_cells_lo"], row["T_geo_cells_hi"] = np.exp([h_lo, h_hi])
        c = compare_groups(base, d, n_boot, seed) if g != baseline else {}
        row["ratio"] = math.exp(c["diff"]) if c else 1.0
        row["ratio_lo"], row["ratio_hi"] = (np.exp([c["diff_lo"], c["diff_hi"]]) if c else (math.nan, math.nan))
        row["equivalence_factor"] = math.exp(c["equivalence_bound"]) if c else math.nan
        row["cells_compared"] = c.get("cells", row["cells"])
        row["log_T_sd"] = c["sd"] if c else pooled_sd(_cells(d["value"], d["cell"]))
        row["seeds_needed"] = c.get("seeds_needed", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)
