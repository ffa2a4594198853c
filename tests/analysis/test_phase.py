"""analysis.phase: the phase table and the collapse onset on synthetic trials rows with a planted threshold."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.phase import collapse_onsets, draw, main, phase_table

BANDWIDTHS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _rows(variant: str, covered: dict, kernel: str = "gaussian", target: str = "eight_gaussians",
          seeds: int = 2, total: int = 8) -> list[dict]:
    """Trials rows: `covered[h]` is the modes each seed covers at bandwidth h (an int, or a list per seed)."""
    rows = []
    for h in BANDWIDTHS:
        per_seed = covered[h] if isinstance(covered[h], list) else [covered[h]] * seeds
        for seed, c in enumerate(per_seed):
            rows.append({"target": target, "kernel": kernel, "variant": variant, "operator": "meanshift",
                         "bandwidth": h, "seed": seed, "status": "censored", "final_modes_covered": float(c),
                         "modes_covered_floor": float(total), "final_mode_mass_error": (total - c) / total + 0.01 * seed,
                         "mode_mass_error_floor": 0.02, "final_high_quality_share": 0.9})
    return rows


@pytest.fixture
def trials() -> pd.DataFrame:
    # per-side: all 8 modes at h >= 0.2, one mode lost by one seed at 0.1, collapsed below
    per_side = {0.02: 1, 0.05: 1, 0.1: [8, 7], 0.2: 8, 0.5: 8, 1.0: 8}
    joint = {h: 8 for h in BANDWIDTHS}
    # too wide as well as too narrow: loses modes at h = 1 and at h <= 0.05
    wide = {0.02: 2, 0.05: 6, 0.1: 8, 0.2: 8, 0.5: 8, 1.0: 5}
    never = {h: 3 for h in BANDWIDTHS}
    rows = (_rows("per-side", per_side) + _rows("joint", joint) + _rows("per-side", wide, kernel="laplacian")
            + _rows("joint", never, kernel="laplacian"))
    rows.append({**rows[0], "status": "error", "final_modes_covered": math.nan})  # failed: left out
    return pd.DataFrame(rows)


def test_phase_table_pools_seeds_and_flags_partial_loss(trials):
    t = phase_table(trials).set_index(["kernel", "variant", "bandwidth"])
    assert len(t) == 4 * len(BANDWIDTHS)
    row = t.loc[("gaussian", "per-side", 0.1)]
    assert row["seeds"] == 2
    assert row["modes_covered"] == pytest.approx(7.5)
    assert row["modes_covered_min"] == 7
    assert row["covered_fraction"] == pytest.approx(7.5 / 8)
    assert not row["all_modes"]  # one seed short of 8 is a loss, even though the mean rounds to 8
    assert t.loc[("gaussian", "joint", 0.1), "all_modes"]
    assert t.loc[("gaussian", "per-side", 0.02), "mode_mass_error"] == pytest.approx(7 / 8 + 0.005)
    lo, hi = t.loc[("gaussian", "per-side", 0.02), ["mode_mass_error_lo", "mode_mass_error_hi"]]
    assert lo < 7 / 8 + 0.005 < hi


def test_collapse_onset_is_the_first_bandwidth_below_the_kept_run(trials):
    o = collapse_onsets(phase_table(trials), "all_modes").set_index(["kernel", "variant"])
    ps = o.loc[("gaussian", "per-side")]
    assert ps["onset"] == 0.1 and ps["kept_down_to"] == 0.2
    assert ps["estimate"] == pytest.approx(math.sqrt(0.02))
    assert "fails at h = 0.1" in ps["verdict"]
    joint = o.loc[("gaussian", "joint")]
    assert math.isnan(joint["onset"]) and joint["kept_down_to"] == 0.02
    assert "holds down to h = 0.02" in joint["verdict"]
    wide = o.loc[("laplacian", "per-side")]
    assert wide["onset"] == 0.05 and wide["kept_down_to"] == 0.1
    assert "also fails at h >= 1" in wide["verdict"]
    never = o.loc[("laplacian", "joint")]
    assert math.isnan(never["onset"]) and "fails at every bandwidth" in never["verdict"]


def test_balanced_criterion_separates_collapse_from_blur():
    """Blur (all samples near the right modes in the right shares, few within 3 std) fails `all_modes` only;
    collapse onto one mode fails both; the bar is half a mode's weight, 1/(2K)."""
    rows = _rows("per-side", {h: 8 for h in BANDWIDTHS})
    for r in rows:
        if r["bandwidth"] == 1.0:  # blurred: modes not covered, masses right
            r.update(final_modes_covered=3.0, final_mode_mass_error=0.02)
        if r["bandwidth"] <= 0.05:  # collapsed: masses wrong, just over 1/16 at 0.05
            r.update(final_mode_mass_error=0.875 if r["bandwidth"] == 0.02 else 0.07)
    stalled = {**rows[-1], "seed": 5, "bandwidth": 0.5, "final_modes_covered": 0.0, "final_mode_mass_error": 0.03,
               "final_high_quality_share": 0.0}  # even masses, no sample near a mode: not balanced
    t = phase_table(pd.DataFrame(rows + [stalled])).set_index("bandwidth")
    assert list(t["balanced"]) == [False, False, True, True, False, True]
    t = phase_table(pd.DataFrame(rows)).set_index("bandwidth")
    assert list(t["balanced"]) == [False, False, True, True, True, True]
    assert list(t["all_modes"]) == [True, True, True, True, True, False]
    o = collapse_onsets(t.reset_index(), "balanced").iloc[0]
    assert o["onset"] == 0.05 and o["kept_down_to"] == 0.1 and o["criterion"] == "mode masses within 1/(2K)"


def test_draw_and_cli_write_the_figure_and_tables(trials, tmp_path, monkeypatch):
    table = phase_table(trials)
    paths = draw(table, trials, collapse_onsets(table), str(tmp_path / "phase"), ("png",))
    assert [p.endswith("phase.png") for p in paths] == [True]
    import analysis.phase as phase

    monkeypatch.setattr(phase, "read_trials", lambda sweeps: trials)
    assert main(["any", "--out", str(tmp_path / "out"), "--png-only"]) == 0
    onsets = (tmp_path / "out" / "onsets.md").read_text()
    assert "fails at h = 0.1 (holds at 0.2)" in onsets
    assert (tmp_path / "out" / "figures" / "phase_eight_gaussians.png").stat().st_size > 10_000
    assert np.isclose(pd.read_csv(tmp_path / "out" / "phase.csv")["covered_fraction"].min(), 1 / 8)
