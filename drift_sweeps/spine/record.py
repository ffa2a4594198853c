"""What a trial reports, written once: metric names, statuses, the summary record, the convergence
rule and the searcher objective.

Standard library only (no torch, no pyarrow, no ray): the trial loop, the Tune adapter, the results
store and the analysis all import it, so a name or a rule changed here changes everywhere.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

# Metrics of every evaluation, in report order, with their Python types.  The names are identical in
# `tune.report`, the `curves` Parquet table and the plot labels.
CURVE_METRICS: dict[str, type] = {
    "step": int,  # optimisation steps taken
    "t": float,  # continuous time t = step * dt (what the schedules and the theory use)
    "bandwidth": float,  # h(t) used for this step's field
    "loss": float,  # the drift loss E|V|^2 (stop-gradient form)
    "drift_rms": float,  # sqrt(E|V|^2) of this step's field
    "worst_rel_error": float,  # the convergence measure (see `converged`)
    "sample_distance": float,  # energy distance between the samples and a fixed data draw
    # sample quality of plane targets (null on the torus); each has a data-vs-data floor in the summary
    "sliced_w2": float,  # squared sliced Wasserstein-2 to the fixed data draw (128 directions)
    "mmd2": float,  # squared MMD to the fixed data draw, Gaussian kernels at 0.25-4 x the data's RMS scale
    "frechet_distance": float,  # digits: Frechet distance to the held-out split in the classifier's features
    "class_coverage": float,  # digits: share of classes predicted for >= 10% of their uniform share
    "class_kl": float,  # digits: KL(predicted class histogram || uniform), nats
    "class_max_deviation": float,  # digits: max_c |share_c - 1/10|
}

# Columns added after SCHEMA_VERSION 1 was first written: files without them still read (as null).
QUALITY_METRICS = ("sliced_w2", "mmd2", "frechet_distance", "class_coverage", "class_kl", "class_max_deviation")

# Reference values measured once per trial, before training (summary fields, null where they do not
# apply): each quality metric between two independent data draws of n_eval samples (`_floor`; for the
# digits: n_eval training images against the held-out split), and two digit baselines: a Gaussian
# fitted to the training split (`_gaussian`) and independent per-pixel Gaussian noise (`_noise`).
FLOOR_FIELDS: dict[str, type] = {
    "sample_distance_floor": float,
    "sliced_w2_floor": float,
    "mmd2_floor": float,
    "frechet_distance_floor": float,
    "frechet_distance_gaussian": float,
    "frechet_distance_noise": float,
    "classifier_accuracy": float,  # digits: the feature classifier's accuracy on the held-out split
}

# Per-frequency errors travel with each report under these keys (the `spectra` table unrolls them).
SPECTRUM_KEYS = ("spectrum_k", "spectrum_error")
# The last report of a trial carries its samples (a list of coordinate lists) under this key (`samples` table).
SAMPLES_KEY = "samples"

# How a trial ended.
CONVERGED, CENSORED, DIVERGED, ERROR = "converged", "censored", "diverged", "error"
STATUSES = (CONVERGED, CENSORED, DIVERGED, ERROR)

# The summary record of a finished trial (the `trials` table's measured columns), with types.
SUMMARY_FIELDS: dict[str, type] = {
    "status": str,  # one of STATUSES
    "convergence_time": float,  # first t with worst_rel_error <= eps; None unless converged
    "steps_run": int,
    "t_final": float,
    "final_loss": float,
    "final_drift_rms": float,
    "final_worst_rel_error": float,
    "final_sample_distance": float,
    "noise_floor": float,  # 1/sqrt(n_samples): the error level sampling noise alone leaves
    "wall_time_s": float,  # the trial's own run time
    "device_used": str,  # cpu, cuda, ... (the config's `device` is the request)
    "final_sliced_w2": float,
    "final_mmd2": float,
    "final_frechet_distance": float,
    "final_class_coverage": float,
    "final_class_kl": float,
    "final_class_max_deviation": float,
    **FLOOR_FIELDS,
}
FINAL_PREFIX = "final_"  # final_<metric> is the metric at the trial's last evaluation
ADDED_LATER = frozenset({*QUALITY_METRICS, *(FINAL_PREFIX + m for m in QUALITY_METRICS), *FLOOR_FIELDS})

# The searcher objective (Tune's `metric`): the convergence time, extrapolated while not converged.
OBJECTIVE = "time_to_eps"
NO_PROGRESS_FACTOR = 10.0  # the objective of a trial without progress: this x its time budget


def converged(step: Any, worst_rel_error: Any, eps: Any) -> Any:
    """The convergence rule: an evaluation after the start with worst_rel_error <= eps.

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
            wall_time_s: Optional[float], device_used: Optional[str],
            floors: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The summary record of a trial from its last evaluation report (empty if it never reported).

    `floors`: the trial's FLOOR_FIELDS values (absent ones are null)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} not one of {', '.join(STATUSES)}")
    out: dict[str, Any] = {
        "status": status, "convergence_time": convergence_time if status == CONVERGED else None,
        "steps_run": last.get("step"), "t_final": last.get("t"),
        "noise_floor": noise_floor(n_samples), "wall_time_s": wall_time_s, "device_used": device_used,
    }
    for name in SUMMARY_FIELDS:
        if name.startswith(FINAL_PREFIX):
            out[name] = last.get(name[len(FINAL_PREFIX):])
    unknown = set(floors or {}) - set(FLOOR_FIELDS)
    if unknown:
        raise ValueError(f"unknown floor field(s) {sorted(unknown)}; allowed: {', '.join(FLOOR_FIELDS)}")
    out.update({name: (floors or {}).get(name) for name in FLOOR_FIELDS})
    return out


def objective(summary_record: Mapping[str, Any], eps: float, t_budget: float) -> float:
    """The searcher objective of a finished trial (its convergence time, else the extrapolation)."""
    if summary_record.get("status") == CONVERGED:
        return float(summary_record["convergence_time"])
    t = summary_record.get("t_final")
    return time_to_eps(t if t is not None else 0.0, summary_record.get("final_worst_rel_error"), eps, t_budget)
