"""One trial identity for both runners, so that either continues a sweep that the other started.

A trial is one repeat of a grid point; a grid point is the values of the keys that the sweep varies on
its grid (grid axes, and the keys its variants set differently), read from the trial's full config
(`grid_key`).  A finished trial is known by its trials row, whatever its trial id (Tune's
ids, or `serial_NNNNN`): the trials still to run are, per grid point, `num_samples` less the rows whose
config has that point's key (`missing_points`).  The Tune runner turns them into presets of its searcher,
the serial runner into trial ids of its own.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Mapping, Optional

from ..spaces import VARIANT_PARAM, SearchSpace


def identity_keys(space: SearchSpace) -> list[str]:
    """The config keys that tell a sweep's grid points apart: grid axes and the keys its variants set
    differently (every other key is the same in every trial of the sweep, or sampled)."""
    return [k for k in space.swept_keys() if axis_kind(space, k) in (None, "grid")]


def grid_key(space: SearchSpace, config: Mapping[str, Any], variant: Optional[str] = None) -> str:
    """What identifies a trial's grid point: the values of its identity keys in its full config, and its variant's
    name when the sweep has several (two variants may set the same values).  Only those: a key that a later
    version of the code adds to the config (with its default) leaves the identity as is."""
    key = {k: config.get(k) for k in identity_keys(space)}
    if len(space.variants) > 1:
        key[VARIANT_PARAM] = variant
    return json.dumps(key, sort_keys=True, default=str)


def row_key(space: SearchSpace, row: Mapping[str, Any]) -> str:
    """The grid key of a finished trial, from its trials row."""
    return grid_key(space, json.loads(row["config_json"]), row.get("variant"))


def missing_points(space: SearchSpace, kept: Mapping[str, Mapping[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(grid point index, Tune parameters) once per trial without a row, in grid order: each grid point as
    often as it lacks rows (a point listed again, as corners of distributions repeat it, counts once)."""
    done = collections.Counter(row_key(space, row) for row in kept.values())
    seen: set[str] = set()
    out: list[tuple[int, dict[str, Any]]] = []
    for index, params in enumerate(space.grid_points()):
        key = grid_key(space, space.resolve(params).to_dict(), params.get(VARIANT_PARAM))
        if key in seen:
            continue
        seen.add(key)
        out += [(index, params)] * max(0, space.num_samples - done.get(key, 0))
    return out


def axis_kind(space: SearchSpace, key: str) -> Optional[str]:
    """'grid', a distribution's name, or None for a key that is not an axis."""
    return next((a.kind for a in space.axes if a.key == key), None)


def grid_part(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that fix a grid point (grid axes and the variant), without the sampled ones."""
    return {k: v for k, v in params.items() if k == VARIANT_PARAM or axis_kind(space, k) == "grid"}
