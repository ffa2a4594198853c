"""The one place where drift_sweeps relies on a Ray internal, kept apart so that a Ray upgrade that changes
it fails one test (tests/test_spine.py) instead of a user's sweep.

- `last_cluster_address`: where `ray start` / `ray up` recorded the running cluster (what
  `ray.init(address="auto")` reads), without connecting to it.

(`--resume` used to restore Tune's pickled experiment state and patch its RunConfig here; it now builds a
fresh Tuner from the recorded JSON spec instead, see `drift_sweeps.run.run_sweep`.)
"""

from __future__ import annotations

from typing import Optional


def last_cluster_address(temp_dir: Optional[str]) -> Optional[str]:
    """RAY_ADDRESS, else the address of the last cluster started on this machine, else None."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None, temp_dir=temp_dir)
