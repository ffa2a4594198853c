"""The two places where drift_sweeps relies on Ray internals, kept together so that a Ray upgrade that
changes them fails one test (tests/test_ray_compat.py) instead of a user's sweep.

- `last_cluster_address`: where `ray start` / `ray up` recorded the running cluster (what
  `ray.init(address="auto")` reads), without connecting to it.
- `restored_run_config`: the RunConfig a restored Tuner will use, so a resumed sweep's callbacks are
  this run's (a fresh results writer), not the ones pickled when the sweep started.
"""

from __future__ import annotations

from typing import Any, Optional


def last_cluster_address(temp_dir: Optional[str]) -> Optional[str]:
    """RAY_ADDRESS, else the address of the last cluster started on this machine, else None."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None, temp_dir=temp_dir)


def restored_run_config(tuner: Any) -> Optional[Any]:
    """The RunConfig object a restored `tune.Tuner` will run with (None if Ray no longer exposes it)."""
    internal = getattr(tuner, "_local_tuner", None)
    return internal.get_run_config() if internal is not None else None
