"""Packed trials (`pack: P`): the grid points still to run, grouped into Ray trials of up to P configurations
that share every key outside `spine.config.PACK_FREE_KEYS` (so one batched step serves them all).

A packed trial's configurations keep their own trial ids (`member_id`), rows, statuses and early stops; a
resume finds the grid points without a row (`identity.missing_points`) and packs them again.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from ..spaces import SearchSpace
from ..spine.config import PACK_FREE_KEYS
from ..spine.record import PACK_PARAM, member_id  # noqa: F401 - the packed trial's names, with the packs


def pack_key(config: Mapping[str, Any]) -> str:
    """What the configurations of one pack share: every key outside PACK_FREE_KEYS."""
    return json.dumps({k: v for k, v in config.items() if k not in PACK_FREE_KEYS}, sort_keys=True, default=str)


def make_packs(space: SearchSpace, points: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """The points (Tune parameters) grouped by `pack_key`, in grid order, cut into packs of at most space.pack."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for params in points:
        groups.setdefault(pack_key(space.resolve(params).to_dict()), []).append(dict(params))
    size = max(1, space.pack)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]
