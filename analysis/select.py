"""Naming one group of a sweep from the command line (the baseline / reference row)."""

from __future__ import annotations

import re
from typing import Optional, Sequence

import pandas as pd

from .convergence import format_value


def _matches(value, wanted: str) -> bool:
    if format_value(value) == wanted or str(value) == wanted:
        return True
    try:
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return False


def select_group(groups: pd.DataFrame, spec: Optional[str], keys: Sequence[str]) -> int:
    """Index (into `groups`, which has the key columns and a `group` label) of the group `spec` names.

    `spec` is None (the first group), a full label as printed ('kernel=gaussian, schedule=constant'),
    or some 'key=value' pairs separated by commas that together match exactly one group.
    """
    if len(groups) == 0:
        raise ValueError("the sweep has no groups")
    if spec is None or spec == "":
        return int(groups.index[0])
    exact = groups.index[groups["group"] == spec]
    if len(exact) == 1:
        return int(exact[0])
    labels = "; ".join(groups["group"])
    pairs = [p.strip() for p in re.split(r",\s*(?=[A-Za-z_][A-Za-z0-9_]*=)", spec) if p.strip()]
    mask = pd.Series(True, index=groups.index)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in keys:
            raise ValueError(f"baseline {spec!r}: {pair!r} is not key=value with a key among the group axes "
                             f"({', '.join(keys) or 'none'}); groups: {labels}")
        mask &= groups[key].map(lambda v: _matches(v, value.strip()))
    hits = groups.index[mask]
    if len(hits) != 1:
        raise ValueError(f"baseline {spec!r} matches {len(hits)} groups, it must match exactly one; groups: {labels}")
    return int(hits[0])
