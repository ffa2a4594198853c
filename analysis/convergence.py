"""Convergence times recomputed post hoc from the curves, with right-censoring.

A trial converges at eps at the first evaluation time (step > 0) where `worst_rel_error <= eps`,
exactly the rule `drift_sweeps.trial.run_trial` applies, so with `interpolate=False` the post-hoc
time at the trial's own eps equals its recorded `convergence_time`.  A trial that never got there
is right-censored at its last finite evaluation time (T > that time): never dropped, never counted
as converged.  Note that a trial stops when it converges at its own eps, so asking post hoc for a
stricter eps makes it censored at its stopping time.  Trials with status diverged/error are flagged
`failed` and kept out of times, medians and fits; tables count them separately.
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from drift_sweeps.spine.metrics import DEFAULT_CONVERGE_ON
from drift_sweeps.spine.record import CONVERGED, DIVERGED, ERROR, converged

from .load import Sweep

log = logging.getLogger(__name__)

FAILED = (DIVERGED, ERROR)


def format_value(v) -> str:
    """Short text for a group-key value (floats with %g, tuples comma-joined)."""
    if isinstance(v, (float, np.floating)):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ",".join(format_value(x) for x in v) + ")"
    return str(v)


def group_label(values: Sequence, keys: Sequence[str]) -> str:
    """'key=value, key=value' for one group ('all' when there are no keys)."""
    if not keys:
        return "all"
    return ", ".join(f"{k}={format_value(v)}" for k, v in zip(keys, values))


def add_group_labels(df: pd.DataFrame, keys: Sequence[str], column: str = "group") -> pd.DataFrame:
    """A copy of df with a `group` label column built from `keys`."""
    out = df.copy()
    out[column] = [group_label(vals, keys) for vals in (out[list(keys)].itertuples(index=False) if keys else
                                                        [()] * len(out))]
    return out


def convergence_measure(curves: pd.DataFrame, converge_on: Optional[pd.Series] = None) -> pd.Series:
    """Per curve row: the value of its trial's convergence metric (`converge_on`, a Series indexed by trial_id;
    worst_rel_error where absent, as in sweeps written before the key existed)."""
    out = curves["worst_rel_error"].astype(float)
    if converge_on is None:
        return out
    names = curves["trial_id"].map(converge_on).fillna(DEFAULT_CONVERGE_ON)
    for name in set(names) - {DEFAULT_CONVERGE_ON}:
        rows = names == name
        out = out.where(~rows, pd.to_numeric(curves[name], errors="coerce") if name in curves else np.nan)
    return out


def first_crossing(curves: pd.DataFrame, eps: Union[float, pd.Series], interpolate: bool = False,
                   converge_on: Optional[pd.Series] = None) -> pd.DataFrame:
    """Per trial: `time` of the first eval (step > 0) whose convergence metric (`converge_on` per trial, default
    worst_rel_error) is <= eps (NaN if none), `t_last`.

    `eps` is one threshold or a Series indexed by trial_id.  With `interpolate`, the crossing is placed
    between the two evaluations around it, linearly in the log of the metric.
    """
    c = curves[["trial_id", "step", "t"]].assign(worst_rel_error=convergence_measure(curves, converge_on))
    c = c.sort_values(["trial_id", "step"], kind="stable")
    c = c[np.isfinite(c["worst_rel_error"])].reset_index(drop=True)
    c["eps"] = (c["trial_id"].map(eps) if isinstance(eps, pd.Series) else float(eps))
    c["eps"] = c["eps"].astype(float)
    out = pd.DataFrame({"t_last": c.groupby("trial_id")["t"].max()})
    out.index.name = "trial_id"
    hit = c[converged(c["step"], c["worst_rel_error"], c["eps"])]
    first = hit.groupby("trial_id").head(1)  # rows are sorted by step within each trial
    times = first.set_index("trial_id")["t"].astype(float)
    if interpolate and len(first):
        prev = first.index.to_numpy() - 1  # the evaluation before the crossing, if it is the same trial's
        ok = (prev >= 0) & (c["trial_id"].to_numpy()[np.maximum(prev, 0)] == first["trial_id"].to_numpy())
        p = c.iloc[np.maximum(prev, 0)]
        e0, e1 = p["worst_rel_error"].to_numpy(), first["worst_rel_error"].to_numpy()
        eps_v = first["eps"].to_numpy()
        ok &= (e0 > eps_v) & (e1 > 0) & (e0 > e1)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = (np.log(e0) - np.log(eps_v)) / (np.log(e0) - np.log(e1))
        t0, t1 = p["t"].to_numpy(), first["t"].to_numpy()
        times = pd.Series(np.where(ok, t0 + frac * (t1 - t0), t1), index=times.index)
    out["time"] = times.reindex(out.index)
    return out


def convergence_times(sweep: Sweep, eps: Optional[float] = None, interpolate: bool = False) -> pd.DataFrame:
    """One row per trial: group keys, scaling axis, seed, status, eps, time, event, failed, recorded_time, group.

    `time` is the convergence time when `event`, else the censoring time (last evaluation); NaN for
    failed trials.  eps=None uses each trial's own configured eps.
    """
    tr = sweep.trials
    keys = list(sweep.axes) + ([sweep.scaling_axis] if sweep.scaling_axis else [])  # a derived axis is no swept key
    cols = ["trial_id", *keys, "seed", "status", "convergence_time", "t_final", "final_worst_rel_error",
            "noise_floor", "eps"]
    out = tr[[c for c in dict.fromkeys(cols) if c in tr.columns]].copy()
    out = out.rename(columns={"convergence_time": "recorded_time", "eps": "run_eps"})
    out["eps"] = out["run_eps"] if eps is None else float(eps)
    converge_on = tr.set_index("trial_id")["converge_on"] if "converge_on" in tr.columns else None
    cross = first_crossing(sweep.curves, out.set_index("trial_id")["eps"], interpolate, converge_on)
    time = out["trial_id"].map(cross["time"])
    t_last = out["trial_id"].map(cross["t_last"]).fillna(out["t_final"])
    out["failed"] = out["status"].isin(FAILED)
    out["event"] = time.notna() & ~out["failed"]
    out["time"] = np.where(out["event"], time, np.where(out["failed"], np.nan, t_last))
    no_curve = ~out["trial_id"].isin(cross.index) & ~out["failed"]
    if no_curve.any():  # nothing to recompute from: the recorded outcome holds at the run's own eps only
        same_eps = out["eps"] == out["run_eps"]
        conv = no_curve & same_eps & (out["status"] == CONVERGED)
        out.loc[conv, "event"] = True
        out.loc[conv, "time"] = out.loc[conv, "recorded_time"]
        out.loc[no_curve & ~same_eps, "time"] = np.nan
        log.warning("%d trial(s) have no curves; %s", int(no_curve.sum()),
                    "their recorded status is used" if same_eps[no_curve].all() else
                    "at a post-hoc eps their times are unknown and they are left out")
    out["censored"] = ~out["event"] & ~out["failed"] & out["time"].notna()
    return add_group_labels(out, sweep.group_keys)


def km_median(times: Sequence[float], events: Sequence[bool]) -> tuple[float, bool]:
    """Kaplan-Meier median of right-censored times -> (value, is_lower_bound).

    When the survival curve never falls to 1/2, the median is only known to exceed the largest
    time observed: that time is returned with is_lower_bound=True.  (nan, False) for no data.
    """
    t = np.asarray(times, dtype=float)
    e = np.asarray(events, dtype=bool)
    keep = np.isfinite(t)
    t, e = t[keep], e[keep]
    if t.size == 0:
        return math.nan, False
    surv = 1.0
    for u in np.unique(t[e]):
        at_risk = np.sum(t >= u)
        d = np.sum((t == u) & e)
        surv *= 1.0 - d / at_risk
        if surv <= 0.5 + 1e-12:
            return float(u), False
    return float(t.max()), True


def group_summary(times: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Per group of `by`: trials, failed (diverged/error), converged fraction of all trials,
    Kaplan-Meier median time (+ lower-bound flag), median final worst error."""
    rows = []
    grouped = times.groupby(list(by), sort=True, dropna=False) if by else [((), times)]
    for name, g in grouped:
        name = name if isinstance(name, tuple) else (name,)
        ok = g[~g["failed"]]
        med, lower = km_median(ok["time"], ok["event"])
        rows.append({
            **dict(zip(by, name)),
            "trials": len(g),
            "failed": int(g["failed"].sum()),
            "frac_converged": float(g["event"].mean()) if len(g) else math.nan,  # failed count as not converged
            "median_T": med,
            "median_T_lower_bound": lower,
            "final_worst_error": float(ok["final_worst_rel_error"].median()) if len(ok) else math.nan,
        })
    return pd.DataFrame(rows)


def speedup_with_bounds(base: float, base_lb: bool, t: float, t_lb: bool) -> tuple[float, bool, bool]:
    """(base / t, is_lower_bound, is_upper_bound) for two medians either of which may be a lower bound.

    A censored baseline makes the ratio a lower bound, a censored row an upper bound; both: unknown (nan).
    """
    if not (np.isfinite(base) and np.isfinite(t)) or t <= 0 or (base_lb and t_lb):
        return math.nan, False, False
    return base / t, bool(base_lb), bool(t_lb)
