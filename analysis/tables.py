"""Comparison tables of a sweep: per (group, K) times, law fits, and the one-row-per-group comparison.

`analyse_sweep` computes everything the report shows (pure computation, no drawing, no files);
`write_tables` writes the comparison as Markdown, LaTeX and CSV.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from .axis import apply_axis
from .convergence import convergence_times, group_summary, km_median, speedup_with_bounds
from .fits import CI_LEVEL, N_BOOT, Law, ci_for, fit_group, fit_scaling, laws_for
from .formatting import display_frame, latex, markdown
from .labels import VARIANT, group_table, labels_for
from .load import Sweep, load_sweep
from .predict import FLOOR_FACTOR, measured_decay_rates, theory_times
from .select import select_group
from .stats import N_BOOT as STATS_N_BOOT, group_statistics


@dataclass
class Analysis:
    """Everything computed from one sweep (all pandas tables)."""

    sweep: Sweep
    eps: Optional[float]  # None: each trial's own eps
    times: pd.DataFrame  # one row per trial (convergence_times)
    per_k: pd.DataFrame  # one row per group x K
    fits: pd.DataFrame  # one row per group x law (empty without a K axis)
    comparison: pd.DataFrame  # one row per group
    rates: pd.DataFrame  # measured vs predicted decay rate per trial x mode
    theory: pd.DataFrame  # theory T(K) per group on integer K
    baseline: str = ""  # label of the reference group
    k_ref: Optional[float] = None
    n_boot: int = N_BOOT
    notes: list[str] = field(default_factory=list)
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)  # group statistics (analysis.stats.group_statistics)
    ci: str = "percentile"  # the fits' bootstrap interval (analysis.fits.ci_tail)

    @property
    def axis(self) -> str:
        """The axis laws are fitted against: `k_max` or an expression of config keys."""
        return self.sweep.axis

    @property
    def laws(self) -> dict[str, Law]:
        """The laws fitted against that axis."""
        return laws_for(self.sweep.axis)

    @property
    def group_order(self) -> list[str]:
        """Group labels in table order (the order every figure and table uses)."""
        return list(self.comparison["group"])

    @property
    def labels(self) -> dict[str, str]:
        """group -> display label ("Gaussian, annealed h0=2 r=0.25"), see `analysis.labels`."""
        return labels_for(self.times, self.sweep.trials, self.sweep.group_keys)


def median_ci(times: Sequence[float], events: Sequence[bool], n_boot: int,
              rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap CI (over trials) of the Kaplan-Meier median; an undefined median counts as +inf."""
    t = np.asarray(times, float)
    e = np.asarray(events, bool)
    if t.size < 2 or n_boot <= 0:
        return math.nan, math.nan
    meds = []
    for _ in range(n_boot):
        i = rng.integers(0, t.size, t.size)
        m, lower = km_median(t[i], e[i])
        meds.append(math.inf if lower else m)
    alpha = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(np.array(meds), [alpha, 1 - alpha], method="inverted_cdf")
    if math.isinf(lo):  # every resample censored: no interval beyond the lower bound itself
        return math.nan, math.nan
    return float(lo), float(hi)


def per_k_table(times: pd.DataFrame, sweep: Sweep, theory: pd.DataFrame, n_boot: int = N_BOOT,
                seed: int = 0) -> pd.DataFrame:
    """One row per group x K: trials, failed, frac_converged, KM median T with bootstrap CI, T_theory."""
    keys = [*sweep.group_keys, *([sweep.scaling_axis] if sweep.scaling_axis else [])]
    table = group_summary(times, keys)
    rng = np.random.default_rng(seed)
    lo, hi, labels = [], [], []
    for _, row in table.iterrows():
        sel = np.ones(len(times), bool)
        for k in keys:
            sel &= (times[k] == row[k]).to_numpy()
        cell = times[sel & ~times["failed"].to_numpy()]
        a, b = median_ci(cell["time"], cell["event"], n_boot, rng)
        lo.append(a)
        hi.append(b)
        labels.append(times.loc[sel, "group"].iloc[0])
    table.insert(len(keys), "group", labels)
    table["median_T_lo"], table["median_T_hi"] = lo, hi
    if sweep.scaling_axis and len(theory):
        th = theory.set_index(["group", "K"])["T_theory"]
        exact = sweep.scaling_axis != "k_max"  # the K_max theory is tabulated on integer K
        table["T_theory"] = [th.get((g, k if exact else int(k)), math.nan)
                             for g, k in zip(table["group"], table[sweep.scaling_axis])]
    else:
        table["T_theory"] = (theory.set_index("group")["T_theory"].reindex(table["group"]).to_numpy()
                             if len(theory) else math.nan)
    return table


def comparison_table(per_k: pd.DataFrame, fits: pd.DataFrame, sweep: Sweep, baseline: Optional[str] = None,
                     k_ref: Optional[float] = None) -> tuple[pd.DataFrame, str, Optional[float]]:
    """One row per group: trials, failed, fraction converged, median T at K_ref with CI, theory T, best law,
    its coefficients and per-doubling increment with CIs, its bootstrap support, speed-up over `baseline`.

    K_ref defaults to the largest K every group has.  Returns (table, baseline label, K_ref).
    """
    keys, axis = sweep.group_keys, sweep.scaling_axis
    groups = per_k.drop_duplicates("group")[[*keys, "group"]].reset_index(drop=True)
    base_label = groups.loc[select_group(groups, baseline, keys), "group"]
    if axis:
        if k_ref is None:
            common = set.intersection(*[set(g[axis]) for _, g in per_k.groupby("group")])
            k_ref = max(common) if common else None
    rows = []
    for _, g in groups.iterrows():
        cells = per_k[per_k["group"] == g["group"]]
        at = cells[cells[axis] == k_ref] if axis and k_ref is not None else cells.iloc[-1:] if axis else cells
        row = {k: g[k] for k in keys}
        row["group"] = g["group"]
        row["trials"] = int(cells["trials"].sum())
        row["failed"] = int(cells["failed"].sum())
        row["frac_converged"] = float((cells["frac_converged"] * cells["trials"]).sum() / max(cells["trials"].sum(), 1))
        if axis:
            row["K_ref"] = at[axis].iloc[0] if len(at) else math.nan
        for c in ("median_T", "median_T_lo", "median_T_hi", "median_T_lower_bound", "T_theory"):
            row[c] = at[c].iloc[0] if len(at) else math.nan
        if len(fits):
            f = fits[(fits["group"] == g["group"]) & fits["best"]]
            if len(f):
                f = f.iloc[0]
                row["best_law"] = f["formula"]
                for c in ("a", "a_lo", "a_hi", "b", "b_lo", "b_hi", "dT_per_doubling", "dT_per_doubling_lo",
                          "dT_per_doubling_hi"):
                    row[c] = f[c]
                row["law_support"] = f["best_support"]
            else:
                row["best_law"] = "no fit"
        rows.append(row)
    table = pd.DataFrame(rows)
    if "median_T_lower_bound" in table:
        table["median_T_lower_bound"] = table["median_T_lower_bound"].fillna(False).astype(bool)
    base = table[table["group"] == base_label].iloc[0]
    sp = [(1.0, False, False) if r["group"] == base_label else  # the reference row, even when censored
          speedup_with_bounds(base["median_T"], bool(base["median_T_lower_bound"]), r["median_T"],
                              bool(r["median_T_lower_bound"]))
          for _, r in table.iterrows()]
    table["speedup"] = [s[0] for s in sp]
    table["speedup_lower_bound"] = [s[1] for s in sp]
    table["speedup_upper_bound"] = [s[2] for s in sp]
    return table, base_label, k_ref


def analyse_sweep(sweep: Union[str, Sweep], eps: Optional[float] = None, baseline: Optional[str] = None,
                  n_boot: int = N_BOOT, seed: int = 0, interpolate: bool = False, criterion: str = "aic",
                  k_ref: Optional[float] = None, floor_factor: float = FLOOR_FACTOR,
                  axis: Optional[str] = None, ci: Optional[str] = None) -> Analysis:
    """Compute every table of the report for a sweep folder (or a loaded Sweep), laws fitted against `axis`
    (default k_max; any expression of config keys, see `analysis.axis`) with `ci` intervals (default
    `ci_for(axis)`)."""
    sweep = load_sweep(sweep) if isinstance(sweep, str) else sweep
    sweep = apply_axis(sweep, axis)
    times = convergence_times(sweep, eps, interpolate)
    axis = sweep.scaling_axis
    theory = theory_times(times, sweep.trials, axis, eps)
    per_k = per_k_table(times, sweep, theory, n_boot, seed)
    ci = ci or ci_for(sweep.axis)
    fits = fit_scaling(times, sweep.group_keys, axis, laws_for(axis), n_boot, seed, criterion, ci) if axis else \
        pd.DataFrame()
    comparison, base_label, k_ref = comparison_table(per_k, fits, sweep, baseline, k_ref)
    named = group_table(times, sweep.trials, sweep.group_keys)
    if named[VARIANT].notna().any() and VARIANT not in comparison:  # the space's variant names, when stored
        comparison.insert(0, VARIANT, comparison["group"].map(dict(zip(named["group"], named[VARIANT]))))
    rates = measured_decay_rates(sweep, times, floor_factor)
    stats = group_statistics(times, axis, list(comparison["group"]), base_label, STATS_N_BOOT if n_boot > 0 else 0,
                             seed)
    return Analysis(sweep=sweep, eps=eps, times=times, per_k=per_k, fits=fits, comparison=comparison, rates=rates,
                    theory=theory, baseline=base_label, k_ref=k_ref, n_boot=n_boot,
                    notes=analysis_notes(sweep, times, fits, theory), stats=stats, ci=ci)


def analysis_notes(sweep: Sweep, times: pd.DataFrame, fits: pd.DataFrame, theory: pd.DataFrame) -> list[str]:
    """The report's notes: failed trials, fits that cannot tell the laws apart, groups without theory."""
    axis, notes = sweep.scaling_axis, []
    failed = times[times["failed"]]
    if len(failed):
        counts = ", ".join(f"{n} {s}" for s, n in failed["status"].value_counts().items())
        notes.append(f"{len(failed)} trial(s) failed ({counts}) "
                     "and are left out of times and fits: " + ", ".join(failed["trial_id"].head(10)))
    if not axis:
        notes.append("the sweep did not vary k_max: no scaling-law fits" if sweep.axis == "k_max" else
                     f"the axis {sweep.axis} takes fewer than two values in this sweep: no scaling-law fits")
    elif len(fits):
        name = "k_max" if axis == "k_max" else axis
        spans = times[times["event"]].groupby("group")[axis].nunique()
        for g in fits.loc[fits["ok"], "group"].unique():
            if spans.get(g, 0) < 3:
                notes.append(f"{g}: converged trials at only {spans.get(g, 0)} {name} values, too few to tell "
                             "the laws apart reliably")
        best = fits[fits["best"] & fits["ok"]]
        flat = best[(best["b_hi"] - best["b_lo"]).abs() <= 1e-9 * (1 + best["b"].abs())]
        for g in flat["group"]:
            notes.append(f"{g}: every bootstrap resample gave the same fit (the seeds' times coincide at each "
                         f"{name}), so the bootstrap CIs have zero width; the Wald `b_se` in the fits table reflects "
                         "the scatter about the law instead")
    for group, status in theory.drop_duplicates("group")[["group", "theory_status"]].itertuples(index=False):
        if status != "ok":
            notes.append(f"no linear-theory prediction for {group}: {status}")
    return notes


def fit_columns(keys: Sequence[str]) -> list[str]:
    """The columns of `fit_scaling`'s table for group keys `keys` (what fits.csv has, even when empty)."""
    probe = pd.DataFrame({"K": [1.0, 2.0], "T": [1.0, 2.0], "event": [True, True], "seed": [0, 0]})
    cols = list(fit_group(probe, n_boot=0).columns)
    return [*keys, "group", "law", *[c for c in cols if c != "law"]]


def comparison_display(table: pd.DataFrame, keys: Sequence[str], axis: Optional[str] = None) -> pd.DataFrame:
    """The comparison table with the columns a reader wants, in reading order (the raw table stays in CSV);
    `K_ref` is named after the axis when that is not k_max."""
    want = [*([VARIANT] if VARIANT not in keys else []), *keys, "trials", "failed", "frac_converged", "K_ref",
            "median_T", "median_T_lo", "median_T_hi",
            "median_T_lower_bound", "T_theory", "best_law", "a", "a_lo", "a_hi", "b", "b_lo", "b_hi",
            "dT_per_doubling", "dT_per_doubling_lo", "dT_per_doubling_hi", "law_support", "speedup",
            "speedup_lower_bound", "speedup_upper_bound"]
    shown = table[[c for c in want if c in table.columns]]
    return shown.rename(columns={"K_ref": f"{axis} (ref)"}) if axis not in (None, "k_max") else shown


def stats_display(stats: pd.DataFrame, labels: Optional[dict] = None) -> pd.DataFrame:
    """The group statistics as text columns for the report: T with both CIs, ratio with CI, equivalence, seeds."""
    if stats.empty:
        return stats
    s = stats.rename(columns={"T_geo_cells_lo": "Tc_lo", "T_geo_cells_hi": "Tc_hi"}).assign(Tc=stats["T_geo"])
    s = s.assign(equivalence_factor=s["equivalence_factor"].map(lambda f: f"x{f:.3g}" if np.isfinite(f) else "-"))
    text = display_frame(s[["group", "cells", "trials", "censored", "T_geo", "T_geo_lo", "T_geo_hi", "Tc", "Tc_lo",
                            "Tc_hi", "ratio", "ratio_lo", "ratio_hi", "equivalence_factor", "seeds_needed"]])
    text["group"] = stats["group"].map(lambda g: (labels or {}).get(g, g))
    return text.rename(columns={"T_geo": "geo-mean T [seeds]", "Tc": "geo-mean T [cells+seeds]",
                                "ratio": "ratio to reference", "equivalence_factor": "equivalent within",
                                "seeds_needed": "seeds needed"})


def write_tables(analysis: Analysis, out_dir: str) -> dict[str, str]:
    """Write comparison.{md,tex,csv}, per_k.csv, fits.csv, decay_rates.csv, times.csv, stats.csv; returns
    name -> path."""
    os.makedirs(out_dir, exist_ok=True)
    keys = analysis.sweep.group_keys
    shown = comparison_display(analysis.comparison, keys, analysis.axis)
    paths = {}
    at = "K_max" if analysis.axis == "k_max" else analysis.axis
    caption = (f"Sweep {analysis.sweep.name}: convergence time T (eps = "
               f"{analysis.eps if analysis.eps is not None else 'per trial'}) at {at} = {analysis.k_ref}, "
               f"best scaling law with {int(CI_LEVEL * 100)}% bootstrap CIs, speed-up over {analysis.baseline}.")
    texts = {"comparison.md": markdown(shown) + "\n", "comparison.tex": latex(shown, caption=caption,
                                                                              label=f"tab:{analysis.sweep.name}")}
    for name, text in texts.items():
        paths[name] = os.path.join(out_dir, name)
        with open(paths[name], "w") as fh:
            fh.write(text)
    frames = {"comparison.csv": analysis.comparison, "per_k.csv": analysis.per_k, "fits.csv": analysis.fits,
              "decay_rates.csv": analysis.rates, "times.csv": analysis.times, "stats.csv": analysis.stats}
    if frames["fits.csv"].empty:  # no k_max axis: a header-only file that pandas reads as an empty table
        frames["fits.csv"] = pd.DataFrame(columns=fit_columns(keys))
    for name, df in frames.items():
        paths[name] = os.path.join(out_dir, name)
        df.to_csv(paths[name], index=False)
    return paths

