"""The study checks (analysis/studies.py) on planted data: a power law's exponent and the verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import studies


def test_power_law_recovers_a_planted_exponent_within_its_ci():
    n = np.repeat([128, 256, 512, 1024], 3)
    hits, widths = 0, []
    for seed in range(200):
        noise = np.exp(0.05 * np.random.default_rng(seed).standard_normal(n.size))
        b, lo, hi = studies.power_law(pd.DataFrame({"n": n, "err": 3.0 * n ** -0.8 * noise}), "n", "err")
        hits += lo < -0.8 < hi
        widths.append(hi - lo)
    assert 0.9 <= hits / 200 <= 0.99  # a 95% interval: neither too narrow nor vacuous
    assert np.median(widths) < 0.1


def test_power_law_needs_two_values_and_positive_errors():
    assert math.isnan(studies.power_law(pd.DataFrame({"n": [1, 1], "err": [1.0, 2.0]}), "n", "err")[0])
    b, _, _ = studies.power_law(pd.DataFrame({"n": [1, 2, 4], "err": [1.0, 0.0, 0.25]}), "n", "err")
    assert abs(b + 1.0) < 1e-12  # the zero is left out


def test_verdicts_name_the_side_or_the_bound():
    assert studies._verdict({"diff": -1, "diff_lo": -2, "diff_hi": -0.5, "equivalence_bound": 2}) == "annealed better"
    assert studies._verdict({"diff": 1, "diff_lo": 0.5, "diff_hi": 2, "equivalence_bound": 2}) == "fixed better"
    assert "not separable" in studies._verdict({"diff": 0, "diff_lo": -1, "diff_hi": 0.5, "equivalence_bound": 1})
    assert studies._ratio_verdict({"diff": math.log(2), "diff_lo": math.log(1.5), "diff_hi": math.log(3),
                                   "equivalence_bound": math.log(3)}).startswith("x2")
    assert studies.drift_label("mean-shift joint annealed") == "mean-shift joint"


def test_generators_check_ranks_drifts_by_their_distance_to_the_floor():
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    rows = []
    for drift, ratio in (("good", 1.2), ("bad", 4.0)):
        for seed in range(5):
            d = ratio * (1 + 0.05 * rng.standard_normal())
            rows.append({"kernel": "gaussian", "variant": drift, "status": "censored", "wall_time_s": 1.0,
                         "final_sample_distance": 0.01 * d, "sample_distance_floor": 0.01,
                         "final_sliced_w2": 0.002 * d, "sliced_w2_floor": 0.002, "final_modes_covered": 8.0,
                         "final_frechet_distance": 3.0 * d, "frechet_distance_floor": 3.0})
    analysis = SimpleNamespace(sweep=SimpleNamespace(trials=pd.DataFrame(rows)))
    table = [ln for ln in "\n".join(studies.generators_check(analysis)).splitlines() if ln.startswith("| gaussian")]
    assert [ln.split(" | ")[2] for ln in table] == ["good", "bad"]
    good, bad = (ln.split(" | ") for ln in table)
    assert good[3].startswith("1.2") and bad[3].startswith("4")  # energy distance / floor, mean [CI]
    assert good[6].startswith("1.2") and bad[6].startswith("4")  # the Frechet distance / floor (digits)
    assert bad[-2].startswith("x3.3")  # bad / good, separated (CI excludes 1)


def test_every_reproduction_study_is_a_command_that_dry_runs(capsys):
    # the re-run block of docs/reproduction*.md lists these commands: each names a shipped space and valid flags,
    # and writes the folder the study reads
    import shlex

    from analysis.reproduction import SETS
    from drift_sweeps.run import main

    for studies_, _, _ in SETS.values():
        for study in studies_:
            argv = shlex.split(study.command())[3:]
            assert main(argv + ["--dry-run"]) == 0, study.name
            out = capsys.readouterr().out
            assert f"results/{study.name}/" in out, (study.name, out[-500:])
