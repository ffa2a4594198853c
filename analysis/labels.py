"""Readable names for the groups of a sweep ("Gaussian, annealed h0=2 r=0.25"), used by every figure and table.

A group is identified by its `group` string ('kernel=gaussian, schedule=exponential, ...', built in
`analysis.convergence`); that string stays the key (and what `--baseline` matches).  For display, a
group is named by its variant (the trials table's `variant` column, when the sweep has named
variants) and by the values of the keys that differ between groups: categorical values as words
(`Gaussian`, `mean-shift`, `no stop-grad`), numbers as short `symbol=value` pairs (`h0=2 r=0.25`).
Words and budget numbers (N, dt, steps, ...) that a variant fixes are left to the variant's name.
Without a `variant` column (sweep files of schema version 1) the schedule names the variant
(`fixed` / `annealed`).  pandas only: cheap to import.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from drift_sweeps.spine.axes import AXES

VARIANT = "variant"

# registry-backed keys: the labels of spine.axes (one table for the config, the torch registries and here)
VALUE_WORDS = {key: {name: entry.label for name, entry in table.items()} for key, table in AXES.items()}
BOOL_WORDS = {"stop_gradient": ("stop-grad", "no stop-grad"), "bandwidth_per_kmax": ("h/K", "h fixed in K")}
SYMBOLS = {"bandwidth": "h", "rate": "r", "bandwidth_min": "h_min", "k_max": "K", "n_samples": "N",
           "n_data": "M", "dt": "dt", "eps": "eps", "lr": "lr", "sinkhorn_iters": "iters", "k_min": "k_min"}
# keys that mean nothing under a constant bandwidth (their value there is a placeholder)
ANNEALING_ONLY = ("rate", "bandwidth_min")
# budget and resolution keys: named in a label only when they vary within a variant (an axis), never
# as part of what a variant sets (the variant's name stands for them)
BUDGET_KEYS = ("n_samples", "n_data", "n_eval", "n_neg", "dt", "steps", "eval_every")


def fmt(v, digits: int = 6) -> str:
    """A value as short text: floats to `digits` significant digits, comma-joined tuples/lists."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}g}"
    if isinstance(v, (tuple, list, np.ndarray)):
        return "(" + ",".join(fmt(x, digits) for x in v) + ")"
    return str(v)


LABEL_DIGITS = 3  # significant digits of numbers in group labels (sampled values are not all worth showing)


def _missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(v)
    return False


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def symbol(key: str, row: Optional[Mapping] = None) -> str:
    """Short symbol of a numeric key (`bandwidth` is `h0` under an annealed schedule)."""
    if key == "bandwidth" and row is not None and row.get("schedule") == "exponential":
        return "h0"
    return SYMBOLS.get(key, key)


def word(key: str, v) -> str:
    """A categorical value as a word (`Gaussian`, `no stop-grad`); numbers as `symbol=value`."""
    if isinstance(v, (bool, np.bool_)):
        yes, no = BOOL_WORDS.get(key, (key, f"no {key}"))
        return yes if v else no
    if _is_number(v):
        return f"{symbol(key)}={fmt(v)}"
    return VALUE_WORDS.get(key, {}).get(str(v), str(v))


def group_table(times: pd.DataFrame, trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per group, in first-seen order: `group`, the key columns, `schedule` and `variant` (None if unknown)."""
    first = times.drop_duplicates("group")[["trial_id", "group"]]
    extra = [c for c in (VARIANT, "schedule") if c in trials.columns and c not in keys]
    cols = ["trial_id", *[k for k in keys if k in trials.columns], *extra]
    out = first.merge(trials[cols], on="trial_id", how="left").drop(columns="trial_id")
    if VARIANT not in out:
        out[VARIANT] = None
    out[VARIANT] = [None if _missing(v) or v == "" else str(v) for v in out[VARIANT]]
    return out.reset_index(drop=True)


def _label(row: Mapping, differing: Sequence[str], has_variant: bool, implied: frozenset = frozenset()) -> str:
    """`implied`: keys whose value the variant fixes; its words and budget numbers are left to the variant's name."""
    words, numbers = [], []
    variant = row.get(VARIANT) if has_variant else None
    annealed = row.get("schedule") == "exponential"
    for k in differing:
        v = row.get(k)
        if k == VARIANT or _missing(v):
            continue
        if k in implied and variant and (not _is_number(v) or k in BUDGET_KEYS):
            continue
        if k == "schedule":
            if variant is None:
                variant = word(k, v)  # the schedule names the variant when the sweep has none
            continue
        if _is_number(v):
            if k in ANNEALING_ONLY and not annealed and "schedule" in row:
                continue
            numbers.append(f"{symbol(k, row)}={fmt(v, LABEL_DIGITS)}")
        else:
            words.append(word(k, v))
    tail = " ".join(([variant] if variant else []) + numbers)
    return ", ".join(words + ([tail] if tail else []))


def group_labels(groups: pd.DataFrame, keys: Sequence[str]) -> dict[str, str]:
    """group -> display label (see the module doc); unique, falling back to the group string on a clash."""
    if groups.empty:
        return {}
    has_variant = groups[VARIANT].notna().any() if VARIANT in groups else False
    cols = [k for k in keys if k in groups.columns]
    if has_variant and VARIANT not in cols:
        cols = [VARIANT, *cols]
    differing = [k for k in cols if groups[k].map(fmt).nunique() > 1]
    if has_variant and VARIANT not in differing and groups[VARIANT].nunique() > 1:
        differing.insert(0, VARIANT)
    implied = frozenset(k for k in differing if k != VARIANT and has_variant
                        and (groups.groupby(VARIANT, dropna=False)[k].agg(lambda c: c.map(fmt).nunique()) <= 1).all())
    out = {}
    for row in groups.to_dict("records"):
        out[row["group"]] = _label(row, differing, has_variant, implied) or (row.get(VARIANT) or "all")
    seen: dict[str, int] = {}
    for lab in out.values():
        seen[lab] = seen.get(lab, 0) + 1
    return {g: (lab if seen[lab] == 1 else g) for g, lab in out.items()}


def labels_for(times: pd.DataFrame, trials: pd.DataFrame, keys: Sequence[str]) -> dict[str, str]:
    """group -> display label for a sweep's convergence-times table."""
    return group_labels(group_table(times, trials, keys), keys)


def trial_label(row: Mapping, keys: Sequence[str]) -> str:
    """One trial's swept values as `key=value` text, for hover boxes and tables."""
    parts = [f"{VARIANT}={row[VARIANT]}"] if not _missing(row.get(VARIANT)) and row.get(VARIANT) else []
    parts += [f"{k}={fmt(row[k])}" for k in keys if k in row and k != VARIANT]
    return ", ".join(parts)
