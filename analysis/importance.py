"""The sweep's objective per trial, and parameter importance (fANOVA) computed from the Parquet rows.

`objective_table` gives one row per trial: its swept parameters, the searcher's metric (read from
`sweep.json`; `time_to_eps` is the post-hoc convergence time, a lower bound for censored trials) and
the trial's position in the search.  `param_importance` rebuilds an Optuna study from those rows
(`optuna.trial.create_trial`, nothing is re-run) and asks `optuna.importance` for the fANOVA
importances, so it works for grid and random sweeps as well as Optuna ones.
"""

from __future__ import annotations

import json
import math
import posixpath
from typing import Optional

import numpy as np
import pandas as pd

from drift_sweeps.results import resolve

from .labels import VARIANT, fmt
from .tables import Analysis

TIME_METRIC = "time_to_eps"


def read_spec(sweep_root: str) -> dict:
    """The `space` part of the sweep folder's sweep.json plus its top-level keys ({} when there is none)."""
    try:
        fs, path = resolve(sweep_root)
        with fs.open_input_stream(posixpath.join(path, "sweep.json")) as fh:
            doc = json.loads(fh.read().decode())
    except (OSError, ValueError):
        return {}
    return {**{k: v for k, v in doc.items() if k != "space"}, **(doc.get("space") or {})}


def param_columns(analysis: Analysis) -> list[str]:
    """The swept parameters a trial is described by: `variant` (when named) and the swept axes but `seed`."""
    trials = analysis.sweep.trials
    cols = list(analysis.sweep.axes)
    if VARIANT in trials and trials[VARIANT].notna().any() and VARIANT not in cols:
        cols.insert(0, VARIANT)
    return cols


def collapse_params(table: pd.DataFrame, params: list[str]) -> list[str]:
    """Merge parameters that vary together (the keys of one variant: schedule, bandwidth, rate, ...).

    Parameters whose values split the trials identically are one parameter for importance and for the
    parallel-coordinates axes; the first keeps its column and is renamed `first (+other, ...)`, which is
    added to `table` (in place).  Parameters that do not vary are dropped.  Returns the new names.
    """
    out: list[str] = []
    seen: dict[tuple, str] = {}
    members: dict[str, list[str]] = {}
    for p in params:
        if p not in table or table[p].map(fmt).nunique() < 2:
            continue
        codes = tuple(pd.factorize(table[p].map(fmt))[0])
        if codes in seen:
            members[seen[codes]].append(p)
        else:
            seen[codes] = p
            members[p] = [p]
    for p, group in members.items():
        name = p if len(group) == 1 else f"{p} (+{', '.join(group[1:])})"
        if name != p:
            table[name] = table[p]
        out.append(name)
    return out


def objective_table(analysis: Analysis, spec: Optional[dict] = None) -> tuple[pd.DataFrame, str, str]:
    """One row per trial (trial-id order = the order Tune created them): `order`, trial_id, the parameters,
    `value` (the metric), `censored` (value is only a lower bound), status.  Returns (table, metric, mode)."""
    spec = spec if spec is not None else read_spec(analysis.sweep.root)
    metric, mode = spec.get("metric") or TIME_METRIC, spec.get("mode") or "min"
    params = param_columns(analysis)
    tr = analysis.sweep.trials
    cols = list(dict.fromkeys(["trial_id", *params, "seed", "status"]))
    out = tr[[c for c in cols if c in tr.columns]].copy()
    t = analysis.times.set_index("trial_id")
    if metric == TIME_METRIC:
        out["value"] = out["trial_id"].map(t["time"]).astype(float)
        out["censored"] = out["trial_id"].map(t["censored"]).fillna(False).astype(bool)
    else:
        col = f"final_{metric}"
        out["value"] = tr[col].astype(float) if col in tr else math.nan
        out["censored"] = False
    failed = out["status"].isin(("diverged", "error"))
    out.loc[failed, "value"] = math.nan
    out.insert(0, "order", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True), metric, mode


def _distribution(values: pd.Series):
    import optuna

    vals = values.dropna()
    if vals.map(lambda v: isinstance(v, (bool, np.bool_, str, tuple, list))).any() or vals.dtype == object:
        choices = sorted({fmt(v) for v in vals})
        return optuna.distributions.CategoricalDistribution(choices), (lambda v: fmt(v))
    lo, hi = float(vals.min()), float(vals.max())
    log = lo > 0 and hi / lo >= 8
    if pd.api.types.is_integer_dtype(vals) and float(lo).is_integer() and float(hi).is_integer():
        return optuna.distributions.IntDistribution(int(lo), int(hi), log=log), (lambda v: int(v))
    return optuna.distributions.FloatDistribution(lo, hi, log=log), (lambda v: float(v))


def param_importance(table: pd.DataFrame, params: list[str], mode: str = "min",
                     log_value: Optional[bool] = None, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """fANOVA importance of each varied parameter for the objective -> (table param/importance, note).

    Failed trials are left out; censored ones enter at their lower bound.  The objective is taken in
    log10 when it is positive and spans more than a factor 10 (times and errors).  An empty table and
    the reason come back when there is nothing to attribute (fewer than 3 trials, one value only, ...).
    """
    empty = pd.DataFrame(columns=["param", "importance"])
    rows = table[np.isfinite(table["value"].astype(float))]
    varied = [p for p in params if p in rows and rows[p].map(fmt).nunique() > 1]
    if len(rows) < 3 or not varied:
        return empty, (f"only {len(rows)} trial(s) with a value" if len(rows) < 3 else "no parameter varies")
    values = rows["value"].astype(float).to_numpy()
    if log_value is None:
        log_value = bool((values > 0).all() and values.max() / values.min() > 10)
    if np.ptp(values) == 0:
        return empty, "every trial has the same objective value"
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {p: _distribution(rows[p]) for p in varied}
    study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
    y = np.log10(values) if log_value else values
    study.add_trials([
        optuna.trial.create_trial(params={p: conv(r[p]) for p, (d, conv) in dists.items()},
                                  distributions={p: d for p, (d, _) in dists.items()}, value=float(v))
        for r, v in zip(rows.to_dict("records"), y)])
    try:
        imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed), normalize=True)
    except (RuntimeError, ValueError, ImportError) as err:
        return empty, f"fANOVA failed: {err}"
    out = pd.DataFrame({"param": list(imp), "importance": [float(v) for v in imp.values()]})
    note = (f"fANOVA on {'log10 ' if log_value else ''}objective over {len(rows)} trials "
            f"({int(rows['censored'].sum())} censored, at their lower bound)")
    return out, note


def search_view(analysis: Analysis, spec: dict, seed: int = 0) -> dict:
    """The searcher's view: objective per trial, metric/mode, fANOVA importances and their note."""
    objective, metric, mode = objective_table(analysis, spec)
    params = collapse_params(objective, param_columns(analysis))
    importance, note = param_importance(objective, params, mode, seed=seed)
    return {"objective": objective, "metric": metric, "mode": mode, "params": params, "importance": importance,
            "importance_note": note, "search": spec.get("search", "grid")}


def smoke_caps(analysis: Analysis, spec: dict) -> Optional[str]:
    """'steps <= 40, n_samples <= 256' when the sweep ran with --smoke (sweep.json says so), else None."""
    if not spec.get("smoke"):
        return None
    tr = analysis.sweep.trials
    caps = [f"{c} <= {int(tr[c].max())}" for c in ("steps", "n_samples", "n_data", "n_eval")
            if c in tr and len(tr) and pd.notna(tr[c].max())]
    return ", ".join(caps) or "capped sizes"
