"""One-table summary of a sweep, printed by the sweep CLI at the end of every sweep.

pandas/numpy/pyarrow only (no scipy, no plotting, no torch, no ray), so importing it is cheap.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from .convergence import convergence_times, group_summary, speedup_with_bounds
from .formatting import markdown
from .load import load_sweep
from .select import select_group


def headline_table(sweep_root: str, eps: Optional[float] = None, baseline: Optional[str] = None) -> pd.DataFrame:
    """One row per combination of the swept axes (seeds pooled): trials, failed, fraction converged,
    median T, final worst error.

    Convergence is recomputed from the curves at `eps` (default: each trial's own eps), with
    right-censoring: `median_T` is the Kaplan-Meier median and `median_T_lower_bound` says it is only
    a lower bound (fewer than half the trials converged).  With `baseline` (a group label such as
    'schedule=constant' or 'key=value,key=value' naming one group of the non-K axes), a `speedup`
    column gives the baseline's median T over each row's, at the same k_max.
    """
    sweep = load_sweep(sweep_root, tables=("trials", "curves"), missing_ok=("curves",))
    times = convergence_times(sweep, eps)
    table = group_summary(times, sweep.axes)
    if baseline is not None:
        table = _with_speedup(table, times, sweep.group_keys, sweep.scaling_axis, baseline)
    return _named_by_variant(table, sweep.trials, sweep.axes)


def _named_by_variant(table: pd.DataFrame, trials: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """With named variants: a `variant` column in place of the swept keys each variant fixes."""
    if "variant" not in trials or trials["variant"].isna().all() or not axes or table.empty:
        return table
    named = trials[[*axes, "variant"]].drop_duplicates(subset=axes)
    fixed = [a for a in axes if named.groupby("variant")[a].nunique(dropna=False).max() == 1
             and named[a].nunique(dropna=False) > 1]
    if not fixed:
        return table
    out = table.merge(named, on=axes, how="left").drop(columns=fixed)
    keys = [a for a in axes if a not in fixed]
    return out[[*keys, "variant", *[c for c in out.columns if c not in (*keys, "variant")]]]


def _with_speedup(table: pd.DataFrame, times: pd.DataFrame, keys: list[str], axis: Optional[str],
                  baseline: str) -> pd.DataFrame:
    groups = times.drop_duplicates("group")[[*keys, "group"]].reset_index(drop=True)
    ref = groups.loc[select_group(groups, baseline, keys)]
    is_ref = np.ones(len(table), dtype=bool)
    for k in keys:
        is_ref &= (table[k] == ref[k]).to_numpy()
    base = table[is_ref].set_index(axis) if axis else table[is_ref]
    out = []
    for _, row in table.iterrows():
        if axis:
            b = base.loc[row[axis]] if row[axis] in base.index else None
        else:
            b = base.iloc[0] if len(base) else None
        if b is None:
            out.append((math.nan, False, False))
        elif all(row[k] == ref[k] for k in keys):
            out.append((1.0, False, False))  # the reference rows themselves, even when censored
        else:
            out.append(speedup_with_bounds(b["median_T"], bool(b["median_T_lower_bound"]), row["median_T"],
                                           bool(row["median_T_lower_bound"])))
    table = table.copy()
    table["speedup"] = [o[0] for o in out]
    table["speedup_lower_bound"] = [o[1] for o in out]
    table["speedup_upper_bound"] = [o[2] for o in out]
    return table


def format_markdown(df: pd.DataFrame) -> str:
    """A Markdown pipe table; numbers at 3 significant digits, lower-bound medians shown as '>T'."""
    return markdown(df)
