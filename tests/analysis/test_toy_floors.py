"""analysis.toy_floors: floor ratios, the acceptance bar and a two-group difference on synthetic trials rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.toy_floors import acceptance, difference, floor_ratios, floors_markdown


def _row(target: str, seed: int, ed: float, sw: float, modes: float = math.nan, share: float = math.nan,
         kernel: str = "laplacian", fd: float = math.nan) -> dict:
    return {"target": target, "kernel": kernel, "operator": "deng", "variant": None, "seed": seed,
            "status": "censored", "wall_time_s": 10.0, "final_sample_distance": ed, "sample_distance_floor": 0.01,
            "final_sliced_w2": sw, "sliced_w2_floor": 0.02, "final_w2_exact": math.nan, "w2_exact_floor": math.nan,
            "final_mmd2": math.nan, "mmd2_floor": math.nan, "final_modes_covered": modes,
            "modes_covered_floor": 8.0 if np.isfinite(modes) else math.nan, "final_high_quality_share": share,
            "high_quality_share_floor": 0.99 if np.isfinite(share) else math.nan, "final_frechet_distance": fd}


@pytest.fixture
def trials() -> pd.DataFrame:
    rows = [_row("moons", s, ed, 0.02 * 1.2) for s, ed in enumerate((0.011, 0.012, 0.013))]  # 1.1-1.3x: passes
    # eight Gaussians: ratios fine, but seed 2 loses a mode and seed 1 has 85% within 3 std
    rows += [_row("eight_gaussians", 0, 0.012, 0.024, 8, 0.95), _row("eight_gaussians", 1, 0.012, 0.024, 8, 0.85),
             _row("eight_gaussians", 2, 0.012, 0.024, 7, 0.97)]
    rows += [_row("swiss_roll", s, ed, 0.02) for s, ed in enumerate((0.012, 0.014, 0.020))]  # seed 2 at 2.0x
    rows.append({**_row("swiss_roll", 3, 1.0, 1.0), "status": "diverged"})  # left out
    return pd.DataFrame(rows)


def test_floor_ratios_pool_seeds_and_keep_the_worst(trials):
    t = floor_ratios(trials).set_index("target")
    assert t.loc["moons", "seeds"] == 3
    assert t.loc["moons", "sample_distance"] == pytest.approx(1.2)
    assert t.loc["moons", "sample_distance_lo"] < 1.2 < t.loc["moons", "sample_distance_hi"]
    assert t.loc["swiss_roll", "sample_distance_worst"] == pytest.approx(2.0)  # the diverged trial is not in it
    assert t.loc["eight_gaussians", "modes_covered_worst"] == 7
    assert t.loc["eight_gaussians", "high_quality_share_worst"] == pytest.approx(0.85)
    assert "w2_exact" not in t or t["w2_exact"].isna().all()  # no finite values: no column


def test_acceptance_checks_every_seed(trials):
    a = acceptance(floor_ratios(trials)).set_index("target")
    assert a.loc["moons", "ok"]
    assert not a.loc["swiss_roll", "ok"] and "sample_distance 2.00x floor" in a.loc["swiss_roll", "fails (worst seed)"]
    fails = a.loc["eight_gaussians", "fails (worst seed)"]
    assert not a.loc["eight_gaussians", "ok"] and "7/8 modes" in fails and "85.0% within 3 std" in fails
    assert acceptance(floor_ratios(trials), factor=2.5).set_index("target").loc["swiss_roll", "ok"]
    assert "| moons |" in floors_markdown(floor_ratios(trials))


def test_difference_separates_a_planted_shift_and_bounds_a_null_one():
    rng = np.random.default_rng(0)
    rows = [_row("digits", s, 0.01, 0.02, kernel=k, fd=base + shift + rng.normal(0, 0.05))
            for s in range(5) for k, shift in (("gaussian", 0.0), ("laplacian", -0.5)) for base in (3.0,)]
    rows += [_row("moons", s, 0.01 + rng.normal(0, 1e-3), 0.02, kernel=k) for s in range(5)
             for k in ("gaussian", "laplacian")]
    d = difference(pd.DataFrame(rows), "kernel", "gaussian", "laplacian",
                   ["frechet_distance", "sample_distance"]).set_index(["target", "metric"])
    fd = d.loc[("digits", "frechet_distance")]
    assert fd["hi"] < 0 and fd["lo"] < -0.5 < fd["hi"] and fd["verdict"] == "laplacian lower"
    assert math.isnan(fd["equivalence_bound"])
    ed = d.loc[("moons", "sample_distance")]
    assert ed["lo"] < 0 < ed["hi"] and ed["equivalence_bound"] == pytest.approx(max(-ed["lo"], ed["hi"]))
    assert ed["verdict"].startswith("not separable")
    assert ("moons", "frechet_distance") not in d.index  # no values: no row
