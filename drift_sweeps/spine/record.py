"""What a trial reports, written once: metric names, statuses, the summary record, the convergence
rule and the searcher objective.

Standard library only (no torch, no pyarrow, no ray): the trial loop, the Tune adapter, the results
store and the analysis all import it, so a name or a rule changed here changes everywhere.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from .metrics import DEFAULT_CONVERGE_ON, FINAL_PREFIX, FLOOR_SUFFIX, METRICS

# Metrics of every evaluation, in report order, with their Python types (the table is `spine.metrics`).
# The names are identical in `tune.report`, the `curves` Parquet table and the plot labels.
CURVE_METRICS: dict[str, type] = {m.name: m.type for m in METRICS}

# Columns added after SCHEMA_VERSION 1 was first written: files without them still read (as null).
QUALITY_METRICS = tuple(m.name for m in METRICS if m.since_v1)

# Reference values measured once per trial, before training (summary fields, null where they do not
# apply): each metric with a floor between two independent data draws of n_eval samples (`_floor`; for the
# digits: n_eval training images against the held-out split), and two digit baselines: a Gaussian
# fitted to the training split (`_gaussian`) and independent per-pixel Gaussian noise (`_noise`).
FLOOR_FIELDS: dict[str, type] = {
    **{m.name + FLOOR_SUFFIX: float for m in METRICS if m.floor},
    "frechet_distance_gaussian": float,
    "frechet_distance_noise": float,
    "classifier_accuracy": float,  # digits: the feature classifier's accuracy on the held-out split
}

# Per-frequency errors travel with each report under these keys (the `spectra` table unrolls them).
SPECTRUM_KEYS = ("spectrum_k", "spectrum_error")
# The last report of a trial carries its samples (a list of coordinate lists) under this key (`samples` table).
SAMPLES_KEY = "samples"

# A packed trial (`pack: P`) is one Tune trial holding several configurations: its Tune parameter is the index of
# its pack, and its configurations' trial ids are `member_id(<Tune trial id>, index)`.
PACK_PARAM = "pack"


def versions(drift_sweeps: str, torch: Optional[str], cuda: Optional[str], more: tuple[str, ...] = ()) -> str:
    """JSON of the package versions a trials row records, the same keys wherever it is built: in a trial
    process (`trial.versions`, torch imported) and on the driver (`sweep.provenance`, torch never imported);
    the other packages' versions from their installed metadata, null where absent."""
    import importlib.metadata
    import json
    import platform

    def version(name: str) -> Optional[str]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return json.dumps({"python": platform.python_version(), "drift_sweeps": drift_sweeps, "torch": torch,
                       "cuda": cuda, **{n: version(n) for n in ("ray", "numpy", *more)}}, sort_keys=True)


def member_id(trial_id: str, index: int) -> str:
    """The trial id of a packed trial's index-th configuration."""
    return f"{trial_id}-{index:04d}"


# How a trial ended.
CONVERGED, CENSORED, DIVERGED, ERROR = "converged", "censored", "diverged", "error"
STATUSES = (CONVERGED, CENSORED, DIVERGED, ERROR)

# The summary record of a finished trial (the `trials` table's measured columns), with types.
SUMMARY_FIELDS: dict[str, type] = {
    "status": str,  # one of STATUSES
    "convergence_time": float,  # first t with <converge_on> <= eps; None unless converged
    "steps_run": int,
    "t_final": float,
    **{FINAL_PREFIX + m.name: m.type for m in METRICS if m.final and not m.since_v1},
    "noise_floor": float,  # 1/sqrt(n_samples): the error level sampling noise alone leaves
    "wall_time_s": float,  # the trial's own run time
    "device_used": str,  # cpu, cuda, ... (the config's `device` is the request)
    **{FINAL_PREFIX + m.name: m.type for m in METRICS if m.final and m.since_v1},
    **FLOOR_FIELDS,
    "threads": int,  # torch threads the trial computed on (SearchSpace.threads, under Ray and --serial alike)
}
ADDED_LATER = frozenset({*QUALITY_METRICS, *(FINAL_PREFIX + m for m in QUALITY_METRICS), *FLOOR_FIELDS, "threads"})

# The searcher objective (Tune's `metric`): the convergence time, extrapolated while not converged.
OBJECTIVE = "time_to_eps"
NO_PROGRESS_FACTOR = 10.0  # the objective of a trial without progress: this x its time budget


def converged(step: Any, worst_rel_error: Any, eps: Any) -> Any:
    """The convergence rule: an evaluation after the start with the convergence metric (`converge_on`,
    by default worst_rel_error) <= eps.

    Works on scalars and, element-wise, on pandas Series / numpy arrays.
    """
    return (step > 0) & (worst_rel_error <= eps)


def noise_floor(n_samples: int) -> float:
    """RMS of |E_q exp(i k.x)| for n i.i.d. samples of any q with phi_q(k) = 0: 1/sqrt(n)."""
    return 1.0 / math.sqrt(n_samples)


def time_to_eps(t: float, worst_rel_error: float, eps: float, t_budget: float) -> float:
    """The searcher objective: time to reach eps, extrapolated while the trial has not.

    Converged (worst <= eps): t.  Otherwise the worst relative error is extrapolated log-linearly
    from (0, 1) through (t, worst): t log(eps) / log(worst).  No progress yet, a diverged trial or
    an estimate beyond it: NO_PROGRESS_FACTOR x the trial's time budget, a finite value TPE can rank.
    """
    cap = NO_PROGRESS_FACTOR * t_budget
    if worst_rel_error is None or not math.isfinite(worst_rel_error) or t <= 0 or worst_rel_error >= 1.0:
        return cap
    if worst_rel_error <= eps:
        return t
    return min(cap, t * math.log(eps) / math.log(worst_rel_error))


def summary(status: str, last: Mapping[str, Any], *, convergence_time: Optional[float], n_samples: int,
            wall_time_s: Optional[float], device_used: Optional[str], threads: Optional[int] = None,
            floors: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The summary record of a trial from its last evaluation report (empty if it never reported).

    `floors`: the trial's FLOOR_FIELDS values (absent ones are null)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} not one of {', '.join(STATUSES)}")
    out: dict[str, Any] = {
        "status": status, "convergence_time": convergence_time if status == CONVERGED else None,
        "steps_run": last.get("step"), "t_final": last.get("t"),
        "noise_floor": noise_floor(n_samples), "wall_time_s": wall_time_s, "device_used": device_used,
        "threads": threads,
    }
    for name in SUMMARY_FIELDS:
        if name.startswith(FINAL_PREFIX):
            out[name] = last.get(name[len(FINAL_PREFIX):])
    unknown = set(floors or {}) - set(FLOOR_FIELDS)
    if unknown:
        raise ValueError(f"unknown floor field(s) {sorted(unknown)}; allowed: {', '.join(FLOOR_FIELDS)}")
    out.update({name: (floors or {}).get(name) for name in FLOOR_FIELDS})
    return out


def objective(summary_record: Mapping[str, Any], eps: float, t_budget: float,
              converge_on: str = DEFAULT_CONVERGE_ON) -> float:
    """The searcher objective of a finished trial (its convergence time, else the extrapolation)."""
    if summary_record.get("status") == CONVERGED:
        return float(summary_record["convergence_time"])
    t = summary_record.get("t_final")
    return time_to_eps(t if t is not None else 0.0, summary_record.get(FINAL_PREFIX + converge_on), eps, t_budget)
