"""Post-hoc convergence times, censoring and the Kaplan-Meier median."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.convergence import convergence_times, first_crossing, km_median, speedup_with_bounds
from analysis.headline import format_markdown, headline_table
from analysis.load import load_sweep


def test_posthoc_times_agree_with_the_recorded_ones_at_the_trials_eps(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    times = convergence_times(sweep)  # eps=None: each trial's own eps
    assert len(times) == len(sweep.trials) == 12
    conv = times[times["status"] == "converged"]
    cens = times[times["status"] == "censored"]
    assert len(conv) and len(cens), "the tiny sweep should have both converged and censored trials"
    assert conv["event"].all()
    assert np.array_equal(conv["time"].to_numpy(), conv["recorded_time"].to_numpy())
    assert not cens["event"].any() and cens["recorded_time"].isna().all()
    assert np.array_equal(cens["time"].to_numpy(), cens["t_final"].to_numpy())  # censored at the last evaluation
    # the same threshold given explicitly is the same computation
    again = convergence_times(sweep, eps=float(sweep.trials["eps"].iloc[0]))
    assert again[["time", "event"]].equals(times[["time", "event"]])


def test_posthoc_eps_looser_and_stricter(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    run = convergence_times(sweep).set_index("trial_id")
    loose = convergence_times(sweep, eps=0.5).set_index("trial_id")
    strict = convergence_times(sweep, eps=0.01).set_index("trial_id")
    assert loose["event"].sum() > run["event"].sum()
    ev = run["event"]
    assert (loose.loc[ev, "time"] <= run.loc[ev, "time"]).all()
    # a trial stops at its own eps, so a stricter eps censors it at its stopping time
    assert not strict["event"].any()
    assert np.array_equal(strict["time"].to_numpy(), run["t_final"].to_numpy())
    # every trial is still there: censored trials are never dropped
    assert len(loose) == len(strict) == len(run)


def _curves(rows):
    return pd.DataFrame(rows, columns=["trial_id", "step", "t", "worst_rel_error"])


def test_first_crossing_rules_and_interpolation():
    curves = _curves([
        ("a", 0, 0.0, 1.0), ("a", 10, 1.0, 0.5), ("a", 20, 2.0, 0.05), ("a", 30, 3.0, 0.01),
        ("b", 0, 0.0, 1.0), ("b", 10, 1.0, 0.8), ("b", 20, 2.0, float("nan")),  # diverged after t=1
        ("c", 0, 0.0, 0.05), ("c", 10, 1.0, 0.2),  # step 0 never counts
    ])
    out = first_crossing(curves, 0.1)
    assert out.loc["a", "time"] == 2.0 and out.loc["a", "t_last"] == 3.0
    assert math.isnan(out.loc["b", "time"]) and out.loc["b", "t_last"] == 1.0
    assert math.isnan(out.loc["c", "time"])
    interp = first_crossing(curves, 0.1, interpolate=True)
    expected = 1.0 + (math.log(0.5) - math.log(0.1)) / (math.log(0.5) - math.log(0.05))
    assert interp.loc["a", "time"] == pytest.approx(expected)
    per_trial = first_crossing(curves, pd.Series({"a": 0.6, "b": 0.9, "c": 0.3}))
    assert per_trial.loc["a", "time"] == 1.0 and per_trial.loc["b", "time"] == 1.0 and per_trial.loc["c", "time"] == 1.0


def test_km_median():
    assert km_median([1, 2, 3], [True] * 3) == (2.0, False)
    assert km_median([1, 2, 3, 4], [True] * 4) == (2.0, False)
    # 2 of 3 censored at the horizon: the median is only a lower bound
    assert km_median([2, 5, 5], [True, False, False]) == (5.0, True)
    # censoring before the events moves the median up, as it should
    assert km_median([1, 3, 4, 5], [False, True, True, True]) == (4.0, False)
    value, lower = km_median([], [])
    assert math.isnan(value) and not lower


def test_speedup_bounds():
    assert speedup_with_bounds(10.0, False, 5.0, False) == (2.0, False, False)
    assert speedup_with_bounds(10.0, True, 5.0, False) == (2.0, True, False)  # baseline censored: at least 2x
    assert speedup_with_bounds(10.0, False, 5.0, True) == (2.0, False, True)
    assert math.isnan(speedup_with_bounds(10.0, True, 5.0, True)[0])


def test_headline_table(tiny_sweep):
    table = headline_table(tiny_sweep)
    assert list(table.columns[:5]) == ["schedule", "bandwidth", "rate", "bandwidth_min", "k_max"]
    assert len(table) == 6 and table["trials"].sum() == 12
    assert {"frac_converged", "median_T", "final_worst_error"} <= set(table.columns)
    with_base = headline_table(tiny_sweep, eps=0.3, baseline="schedule=constant")
    assert "speedup" in with_base
    base_rows = with_base[with_base["schedule"] == "constant"]
    assert (base_rows["speedup"] == 1.0).all()
    text = format_markdown(with_base)
    assert text.count("\n") == len(with_base) + 1 and text.startswith("| schedule |")
    with pytest.raises(ValueError, match="exactly one"):
        headline_table(tiny_sweep, baseline="bandwidth_min=0.05,schedule=constant")


def test_headline_without_curves_uses_the_recorded_status(tiny_sweep, tmp_path):
    import shutil

    dst = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, dst, ignore=shutil.ignore_patterns("curves"))
    full = headline_table(tiny_sweep)
    partial = headline_table(str(dst))
    assert partial[["trials", "frac_converged", "median_T"]].equals(full[["trials", "frac_converged", "median_T"]])
