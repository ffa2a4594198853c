"""Linear-theory overlay (docs/theory.md (per-mode rates, convergence time)) and per-mode decay rates measured from `spectra`.

The theory applies to the torus targets with a kernel of known Fourier transform, the mean-shift
field (also `score` with the Gaussian kernel, and `sinkhorn` with 0 iterations), particles, and the
stop-gradient on; elsewhere the predictions are NaN and `theory_status` says why.  Its times are
continuous; measured times are the first evaluation at or after the crossing, so they sit up to
eval_every * dt above a perfect prediction.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from drift_sweeps.spine.config import defaults
from drift_sweeps.spine.schedules import THEORY_FORM, initial_bandwidth as _h0
from drift_sweeps.spine.theory import SHAPED, SPECTRA, convergence_time, decay_rate, log_decay_exponential
from drift_sweeps.spine.torus import TORUS_DIMS, carries, mode_norms
from drift_sweeps.spine.torus import lowest_mode as _lowest_mode

from .load import Sweep

DEFAULTS = defaults()  # what a key missing from a row means
FLOOR_FACTOR = 2.0  # decay rates are fitted where the error is at least this many noise floors
MIN_POINTS = 3  # evaluations needed in that window to fit a slope


def _get(cfg: Mapping, key: str):
    """A config value of a trials row (or dict), the config default when absent or NaN."""
    v = cfg.get(key, DEFAULTS[key])
    return DEFAULTS[key] if isinstance(v, float) and math.isnan(v) and not isinstance(DEFAULTS[key], float) else v


def theory_status(cfg: Mapping) -> str:
    """'' when the linear theory predicts this configuration, else the reason it does not."""
    if cfg.get("target") not in TORUS_DIMS:
        return f"target {cfg.get('target')!r} is not a torus target"
    if cfg.get("kernel") not in SPECTRA:
        return f"no Fourier transform for kernel {cfg.get('kernel')!r}"
    if _get(cfg, "schedule") not in THEORY_FORM:
        return f"no closed form for schedule {_get(cfg, 'schedule')!r}"
    if str(_get(cfg, "normalization")) not in ("auto", "per_side"):
        return f"normalization {_get(cfg, 'normalization')!r} is not the per-side field the theory linearises"
    op = _get(cfg, "operator")
    if not (op == "meanshift" or (op == "score" and cfg.get("kernel") == "gaussian")
            or (op == "sinkhorn" and _get(cfg, "sinkhorn_iters") == 0)):
        return f"operator {op!r} is not the mean-shift field the theory linearises"
    if not _truthy(_get(cfg, "stop_gradient")):
        return "stop_gradient=False follows a different flow"
    if _get(cfg, "model") != "particles":
        return f"model {cfg.get('model')!r}: the theory describes particles"
    return ""


def active_mode_norms(target: str, k_min: int, k_max: int) -> list[float]:
    """|k| of the modes a torus target carries (drift_sweeps.spine.torus)."""
    return mode_norms(TORUS_DIMS[target], k_min, k_max)


def lowest_mode(cfg: Mapping, k_max: Optional[int] = None) -> int:
    """Lowest frequency a torus target carries: k_max alone with target_modes='single', else k_min."""
    k_max = int(cfg["k_max"] if k_max is None else k_max)
    return _lowest_mode(int(_get(cfg, "k_min")), k_max, _get(cfg, "target_modes"))


def is_active(target: str, k_vec: str, k_min: int, k_max: int) -> bool:
    """Whether the integer frequency `k_vec` ('3' or '1,-2') is one the target carries."""
    vec = tuple(int(c) for c in str(k_vec).split(","))
    return carries(vec, TORUS_DIMS[target], k_min, k_max)


def initial_bandwidth(cfg: Mapping, k_max: Optional[float] = None) -> float:
    """h0 of a configuration at `k_max` (default its own): bandwidth, or bandwidth / k_max with bandwidth_per_kmax."""
    k = float(cfg["k_max"] if k_max is None else k_max)
    return _h0(float(cfg["bandwidth"]), k, _truthy(_get(cfg, "bandwidth_per_kmax")))


def _truthy(v) -> bool:
    try:
        return bool(v) and not (isinstance(v, float) and math.isnan(v))
    except (TypeError, ValueError):
        return False


def _shape(cfg: Mapping) -> Optional[float]:
    """The kernel family's shape (kernel_shape) where the kernel is a family member, else None."""
    return float(_get(cfg, "kernel_shape")) if cfg.get("kernel") in SHAPED else None


def _schedule(cfg: Mapping, k_max: Optional[float] = None) -> tuple[float, float, float]:
    """(h0, rate, h_min) as the theory functions take them (rate 0 for a constant bandwidth)."""
    form = THEORY_FORM[_get(cfg, "schedule")]
    return form(initial_bandwidth(cfg, k_max), float(_get(cfg, "rate")), float(_get(cfg, "bandwidth_min")))


def predicted_time(cfg: Mapping, k_max: Optional[int] = None, eps: Optional[float] = None) -> float:
    """Linear-theory T(K_max, eps) for a trial configuration (NaN when the theory does not apply)."""
    if theory_status(cfg):
        return math.nan
    k_max = int(cfg["k_max"] if k_max is None else k_max)
    k_min = lowest_mode(cfg, k_max)
    eps = float(cfg["eps"] if eps is None else eps)
    h0, rate, h_min = _schedule(cfg, k_max)
    modes = active_mode_norms(cfg["target"], k_min, k_max)
    return convergence_time(cfg["kernel"], k_max, eps, h0, rate, h_min, TORUS_DIMS[cfg["target"]], modes=modes,
                            shape=_shape(cfg))


def predicted_rate(cfg: Mapping, k_norm: float, t0: float = 0.0, t1: Optional[float] = None) -> float:
    """Linear-theory decay rate of mode |k|: lambda(k) at fixed bandwidth, else its average over [t0, t1]."""
    if theory_status(cfg):
        return math.nan
    h0, rate, h_min = _schedule(cfg)
    dim = TORUS_DIMS[cfg["target"]]
    if rate <= 0.0 or t1 is None or t1 <= t0:
        h = h0 if rate <= 0.0 else max(h0 * math.exp(-rate * t0), h_min)
        return decay_rate(cfg["kernel"], k_norm, h, dim, _shape(cfg))
    d = (log_decay_exponential(cfg["kernel"], k_norm, t1, h0, rate, h_min, dim, _shape(cfg))
         - log_decay_exponential(cfg["kernel"], k_norm, t0, h0, rate, h_min, dim, _shape(cfg)))
    return -d / (t1 - t0)


def _group_configs(trials: pd.DataFrame) -> pd.DataFrame:
    """The first trial row of each group (the unswept keys are equal within a group)."""
    return trials.drop_duplicates("group").set_index("group")


def theory_times(times: pd.DataFrame, trials: pd.DataFrame, axis: Optional[str], eps: Optional[float] = None,
                 k_grid: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Theory T per group over integer K (1..max measured K, or `k_grid`): columns group, K, T_theory, status.

    For an axis other than k_max, the theory at each measured axis value instead (`theory_at_cells`).
    """
    if axis is not None and axis != "k_max":
        return theory_at_cells(times, trials, axis, eps)
    tr = trials.merge(times[["trial_id", "group"]], on="trial_id")
    rows = []
    for group, cfg in _group_configs(tr).iterrows():
        cfg = cfg.to_dict()
        status = theory_status(cfg)
        ks = list(k_grid) if k_grid is not None else (
            list(range(1, int(tr.loc[tr["group"] == group, axis].max()) + 1)) if axis else [int(cfg["k_max"])])
        for k in ks:
            t = predicted_time(cfg, k, eps) if not status else math.nan
            rows.append({"group": group, "K": k, "T_theory": t, "theory_status": status or "ok"})
    return pd.DataFrame(rows, columns=["group", "K", "T_theory", "theory_status"])


def theory_at_cells(times: pd.DataFrame, trials: pd.DataFrame, axis: str, eps: Optional[float] = None) -> pd.DataFrame:
    """Theory T per group x value of `axis` (any trials column): the median of the cell's trials' own predictions.

    Trials of one cell can differ in the keys the axis combines (separation 2, bandwidth 1 and 4, 2 share
    x = 2); each is predicted at its own configuration.  Columns group, K (the axis value), T_theory, status.
    """
    tr = trials.drop(columns=["group"], errors="ignore").merge(times[["trial_id", "group"]], on="trial_id")
    tr = tr[np.isfinite(pd.to_numeric(tr[axis], errors="coerce").astype(float))]
    status = {g: theory_status(cfg.to_dict()) for g, cfg in _group_configs(tr).iterrows()}
    rows = []
    for (group, k), cell in tr.groupby(["group", axis], sort=True):
        t = [predicted_time(cfg, None, eps) for cfg in cell.to_dict("records")] if not status[group] else []
        rows.append({"group": group, "K": float(k), "T_theory": float(np.median(t)) if t else math.nan,
                     "theory_status": status[group] or "ok"})
    return pd.DataFrame(rows, columns=["group", "K", "T_theory", "theory_status"])


def measured_decay_rates(sweep: Sweep, times: pd.DataFrame, floor_factor: float = FLOOR_FACTOR,
                         min_points: int = MIN_POINTS) -> pd.DataFrame:
    """Per (trial, active mode): slope fit of log error vs t while the error stays above floor_factor * noise_floor.

    The window starts at t = 0 and ends before the first evaluation below the threshold.  Columns:
    trial_id, group, k, k_norm, k_vec, t_start, t_end, n_points, rate_measured, rate_se, rate_predicted
    (the theory's average rate over the same window), usable (enough points in the window).
    """
    ok = times[~times["failed"]][["trial_id", "group"]]
    configs = sweep.trials.merge(ok, on="trial_id").set_index("trial_id")
    sp = sweep.spectra[sweep.spectra["trial_id"].isin(configs.index)]
    rows = []
    for tid, trial_sp in sp.groupby("trial_id", sort=True):
        cfg = configs.loc[tid].to_dict()
        threshold = floor_factor * float(cfg.get("noise_floor") or 0.0)
        torus = cfg.get("target") in TORUS_DIMS
        for k_vec, g in trial_sp.groupby("k_vec", sort=True):
            if torus and not is_active(cfg["target"], k_vec, lowest_mode(cfg), int(cfg["k_max"])):
                continue  # modes the target does not carry have no decay to measure
            rows.append(_mode_rate(cfg, tid, k_vec, g.sort_values("t"), threshold, min_points))
    cols = ["trial_id", "group", "k", "k_norm", "k_vec", "t_start", "t_end", "n_points", "rate_measured", "rate_se",
            "rate_predicted", "usable"]
    return pd.DataFrame(rows, columns=cols)


def _mode_rate(cfg: dict, tid: str, k_vec: str, g: pd.DataFrame, threshold: float, min_points: int) -> dict:
    """Slope fit of log error vs t for one mode of one trial over its above-threshold window."""
    err = g["error"].to_numpy(float)
    t = g["t"].to_numpy(float)
    below = np.nonzero(~(np.isfinite(err) & (err > threshold) & (err > 0)))[0]
    stop = int(below[0]) if below.size else err.size
    row = {"trial_id": tid, "group": cfg["group"], "k": int(g["k"].iloc[0]), "k_norm": float(g["k_norm"].iloc[0]),
           "k_vec": k_vec, "n_points": stop, "t_start": t[0] if stop else math.nan,
           "t_end": t[stop - 1] if stop else math.nan, "rate_measured": math.nan, "rate_se": math.nan}
    if stop >= min_points and t[stop - 1] > t[0]:
        if stop > 3:
            slope, cov = np.polyfit(t[:stop], np.log(err[:stop]), 1, cov=True)
            row["rate_se"] = float(math.sqrt(cov[0, 0]))
        else:
            slope = np.polyfit(t[:stop], np.log(err[:stop]), 1)
        row["rate_measured"] = -float(slope[0])
    row["rate_predicted"] = predicted_rate(cfg, row["k_norm"], row["t_start"], row["t_end"]) if stop else math.nan
    row["usable"] = bool(np.isfinite(row["rate_measured"]))
    return row


def theory_rate_curves(times: pd.DataFrame, trials: pd.DataFrame, k_max: Optional[float] = None,
                       n: int = 200) -> pd.DataFrame:
    """lambda(k) on a fine k grid for each fixed-bandwidth group the theory covers: columns group, k, rate.

    Annealed groups and bandwidth_per_kmax groups have no single lambda(k) curve and are left out.
    """
    tr = trials.merge(times[["trial_id", "group"]], on="trial_id")
    kmax = float(k_max or tr["k_max"].max())
    grid = np.linspace(0.05, kmax * (math.sqrt(2) if tr["target"].isin(["torus2d", "torus3d"]).any() else 1.0) + 0.5, n)
    rows = []
    for group, cfg in _group_configs(tr).iterrows():
        cfg = cfg.to_dict()
        if theory_status(cfg) or cfg.get("schedule") != "constant" or _truthy(cfg.get("bandwidth_per_kmax", False)):
            continue
        h0 = initial_bandwidth(cfg)
        dim = TORUS_DIMS[cfg["target"]]
        rows.append(pd.DataFrame({"group": group, "k": grid,
                                  "rate": [decay_rate(cfg["kernel"], k, h0, dim, _shape(cfg)) for k in grid]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["group", "k", "rate"])
