"""Synthetic sweeps with a planted law (no torch, no trial loop): T drawn from a law in x = separation/bandwidth.

`planted_times` makes a convergence_times()-like table straight away (for fast coverage checks of the fits);
`write_planted_sweep` writes a real sweep folder (trials, curves, spectra) whose curves cross eps at the planted
times, for end-to-end runs of `python -m analysis.report --axis separation/bandwidth`.
"""

from __future__ import annotations

import json
import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from drift_sweeps import results
from drift_sweeps.spine import record
from drift_sweeps.spine.config import defaults

SEPARATIONS = (1.0, 2.0, 3.0, 4.0, 6.0)
BANDWIDTHS = (0.5, 1.0)  # x = separation / bandwidth takes 7 values: 1, 2, 3, 4, 6, 8, 12

# law -> (a, b, sigma, censoring time): about a fifth of the points censored, at the largest x
PLANTED = {
    "exp_lin": (0.5, 0.3, 0.25, 30.0),
    "exp_x2": (0.5, 0.02, 0.25, 25.0),
    "power": (0.2, 1.5, 0.25, 35.0),
    "log": (2.0, 3.0, 0.5, 8.0),
}


def planted_law_time(law: str, a: float, b: float, x: np.ndarray) -> np.ndarray:
    """The law's median T at x (the response a + b g(x), mapped back for the log-response laws)."""
    reg = {"exp_lin": x, "exp_x2": x ** 2, "power": np.log(x), "log": np.log(x)}[law]
    mu = a + b * reg
    return mu if law == "log" else np.exp(mu)


def draw_times(law: str, x: np.ndarray, rng: np.random.Generator, params: Optional[tuple] = None) -> np.ndarray:
    """True T at each x: Gaussian noise on log T (exp_lin, exp_x2, power) or on T (log)."""
    a, b, sigma, _ = params or PLANTED[law]
    noise = sigma * rng.standard_normal(x.shape)
    if law == "log":
        return np.maximum(planted_law_time(law, a, b, x) + noise, 1e-3)
    return planted_law_time(law, a, b, x) * np.exp(noise)


def design(seeds: int) -> pd.DataFrame:
    """One row per (separation, bandwidth, seed)."""
    rows = [(s, h, k) for s in SEPARATIONS for h in BANDWIDTHS for k in range(seeds)]
    return pd.DataFrame(rows, columns=["separation", "bandwidth", "seed"])


def planted_times(law: str, seeds: int, rng: np.random.Generator, axis_values: Optional[np.ndarray] = None,
                  group: str = "all") -> pd.DataFrame:
    """A convergence_times()-like table (group, seed, time, event, censored, failed, separation, bandwidth) for a
    planted law; `axis_values` are the x of each design row (pass the evaluated axis), else separation/bandwidth."""
    d = design(seeds)
    x = d["separation"].to_numpy() / d["bandwidth"].to_numpy() if axis_values is None else np.asarray(axis_values)
    t_true = draw_times(law, x, rng)
    t_max = PLANTED[law][3]
    d["event"] = t_true <= t_max
    d["time"] = np.minimum(t_true, t_max)
    d["censored"] = ~d["event"]
    d["failed"] = False
    d["group"] = group
    d["config_json"] = [json.dumps({"separation": s, "bandwidth": h}) for s, h in zip(d["separation"], d["bandwidth"])]
    return d


def _curve(t_true: float, t_max: float, dt: float, eps: float) -> list[dict]:
    """Reports whose worst_rel_error decays exponentially and crosses eps at t_true (stopping there), or runs to
    t_max unconverged."""
    steps = int(round(t_max / dt))
    out = []
    for step in range(steps + 1):
        t = step * dt
        err = math.exp(math.log(eps) * t / t_true)
        out.append({"step": step, "t": t, "worst_rel_error": err, "loss": err})
        if step > 0 and err <= eps:
            break
    return out


def write_planted_sweep(root: str, law: str = "exp_lin", seeds: int = 3, kernels: Sequence[str] = ("gaussian",
                        "laplacian"), slow_factor: float = 1.5, seed: int = 0, dt: float = 0.25) -> list[str]:
    """A sweep folder over kernel x separation x bandwidth x seed whose times follow `law` in separation/bandwidth
    (the second kernel `slow_factor` times slower).  `separation` is no config key of this schema: it is kept in
    each trial's config_json, where `--axis` finds it."""
    rng = np.random.default_rng(seed)
    a, b, sigma, t_max = PLANTED[law]
    eps, base, ids = 0.05, defaults(), []
    for ki, kernel in enumerate(kernels):
        d = design(seeds)
        t_true = draw_times(law, d["separation"].to_numpy() / d["bandwidth"].to_numpy(), rng) * slow_factor ** ki
        for row, t in zip(d.itertuples(index=False), t_true):
            tid = f"t{len(ids):04d}"
            config = {**base, "kernel": kernel, "bandwidth": row.bandwidth, "separation": row.separation,
                      "seed": int(row.seed), "eps": eps, "dt": dt, "steps": int(t_max / dt), "eval_every": 1}
            reports = _curve(float(t), t_max, dt, eps)
            last = reports[-1]
            status = record.CONVERGED if last["worst_rel_error"] <= eps else record.CENSORED
            summary = record.summary(status, {**last, "worst_rel_error": last["worst_rel_error"]},
                                     convergence_time=last["t"], n_samples=config["n_samples"], wall_time_s=0.01,
                                     device_used="cpu")
            row_ = results.trial_row(sweep="planted", trial_id=tid, config=json.loads(json.dumps(config)),
                                     summary=summary, node="local",
                                     swept_axes=["kernel", "separation", "bandwidth", "seed"])
            results.write_trial(root, tid, row_)
            results.write_curves(root, tid, reports)
            results.write_spectra(root, tid, [])
            ids.append(tid)
    return ids
