"""Group labels name the variant and the keys that differ; reports of variant and smoke sweeps; fits.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.importance import collapse_params, objective_table, param_importance
from analysis.labels import group_labels, group_table
from analysis.report import main
from analysis.tables import analyse_sweep

FIXTURE = str(Path(__file__).resolve().parents[1] / "fixtures" / "sweep_v1")
KEYS = ["kernel", "schedule", "bandwidth", "rate", "bandwidth_min"]


def _groups(rows, variant=None):
    df = pd.DataFrame(rows, columns=KEYS)
    df["group"] = [f"g{i}" for i in range(len(df))]
    df["variant"] = variant if variant is not None else None
    return df


QUICKSTART = [("gaussian", "constant", 1.0, 0.0, 0.0), ("gaussian", "exponential", 2.0, 0.25, 0.05),
              ("laplacian", "constant", 1.0, 0.0, 0.0), ("laplacian", "exponential", 2.0, 0.25, 0.05)]


def test_labels_name_variant_and_differing_keys():
    labels = group_labels(_groups(QUICKSTART, ["fixed", "annealed", "fixed", "annealed"]), KEYS)
    assert labels == {"g0": "Gaussian, fixed h=1", "g1": "Gaussian, annealed h0=2 r=0.25 h_min=0.05",
                      "g2": "Laplacian, fixed h=1", "g3": "Laplacian, annealed h0=2 r=0.25 h_min=0.05"}


def test_a_variant_name_stands_for_the_words_and_budget_numbers_it_sets():
    """repro_kmax-like: each variant fixes the kernel, the schedule and the particle budget; the labels keep
    the variant's name and its method numbers (h, h0, r, h_min), not 'Gaussian' or N=1024 again."""
    keys = [*KEYS, "n_samples", "bandwidth_per_kmax"]
    rows = [("gaussian", "constant", 1.0, 0.0, 0.0, 512, False), ("gaussian", "exponential", 2.0, 0.25, 0.02, 1024, False),
            ("laplacian", "constant", 1.0, 0.0, 0.0, 512, False), ("gaussian", "constant", 1.3, 0.0, 0.0, 512, True)]
    df = pd.DataFrame(rows, columns=keys)
    df["group"] = [f"g{i}" for i in range(len(df))]
    df["variant"] = ["gaussian_fixed", "gaussian_annealed", "laplacian_fixed", "gaussian_per_kmax"]
    assert group_labels(df, keys) == {"g0": "gaussian_fixed h=1", "g1": "gaussian_annealed h0=2 r=0.25 h_min=0.02",
                                      "g2": "laplacian_fixed h=1", "g3": "gaussian_per_kmax h=1.3"}
    # an axis (kernel varies within a variant) is still named
    df2 = _groups(QUICKSTART, ["fixed", "annealed", "fixed", "annealed"])
    df2["n_samples"] = [512, 1024, 512, 1024]
    assert group_labels(df2, [*KEYS, "n_samples"])["g3"] == "Laplacian, annealed h0=2 r=0.25 h_min=0.05"


def test_labels_fall_back_to_the_schedule_without_a_variant_column():
    old = _groups(QUICKSTART).drop(columns="variant")
    old["variant"] = None
    labels = group_labels(old, KEYS)
    assert labels["g1"] == "Gaussian, annealed h0=2 r=0.25 h_min=0.05" and labels["g0"] == "Gaussian, fixed h=1"


def test_labels_skip_keys_that_do_not_differ_and_stay_unique():
    same_kernel = [r for r in QUICKSTART if r[0] == "gaussian"]
    labels = group_labels(_groups(same_kernel), KEYS)
    assert labels == {"g0": "fixed h=1", "g1": "annealed h0=2 r=0.25 h_min=0.05"}
    # rate is hidden under a constant bandwidth; two groups differing only there keep their full names
    clash = _groups([("gaussian", "constant", 1.0, 0.0, 0.0), ("gaussian", "constant", 1.0, 0.5, 0.0)])
    assert set(group_labels(clash, KEYS).values()) == {"g0", "g1"}
    words = pd.DataFrame({"stop_gradient": [True, False], "group": ["a", "b"], "variant": [None, None]})
    assert group_labels(words, ["stop_gradient"]) == {"a": "stop-grad", "b": "no stop-grad"}


@pytest.fixture(scope="module")
def variant_sweep(tiny_sweep, tmp_path_factory):
    from variant_sweep import make_variant_sweep  # tests/analysis is on sys.path

    return make_variant_sweep(tiny_sweep, str(tmp_path_factory.mktemp("variants") / "variants"))


def test_groups_carry_the_stored_variant(variant_sweep):
    a = analyse_sweep(variant_sweep, eps=0.5, n_boot=0)
    table = group_table(a.times, a.sweep.trials, a.sweep.group_keys)
    assert set(table["variant"]) == {"annealed", "fixed"}
    assert list(a.comparison.columns[:1]) == ["variant"]
    assert set(a.labels.values()) == {"fixed h=1", "annealed h0=2 r=0.25 h_min=0.05"}


def test_importance_from_parquet_rows(variant_sweep):
    a = analyse_sweep(variant_sweep, eps=0.5, n_boot=0)
    objective, metric, mode = objective_table(a)
    assert (metric, mode) == ("time_to_eps", "min") and len(objective) == 4
    assert list(objective["order"]) == [1, 2, 3, 4]
    params = collapse_params(objective, ["variant", *a.sweep.axes])
    assert params == ["variant (+schedule, bandwidth, rate, bandwidth_min)"]  # one variant = one parameter
    imp, note = param_importance(objective, params, mode)
    if objective["value"].nunique() > 1:
        assert math.isclose(imp["importance"].sum(), 1.0) and "fANOVA" in note
    else:
        assert imp.empty and "same objective" in note


def test_importance_separates_a_parameter_that_matters():
    rows = [{"order": i + 1, "trial_id": f"t{i}", "a": a, "b": b, "value": 10.0 ** a + 0.01 * b, "censored": False,
             "status": "converged"} for i, (a, b) in enumerate((a, b) for a in (0, 1, 2) for b in (0, 1, 2, 3))]
    imp, _ = param_importance(pd.DataFrame(rows), ["a", "b"], "min")
    assert imp.iloc[0]["param"] == "a" and imp.iloc[0]["importance"] > 0.9


def test_report_of_a_smoke_variant_sweep(variant_sweep, tmp_path):
    out = tmp_path / "report"
    assert main([variant_sweep, "--out", str(out), "--eps", "0.5", "--n-boot", "10"]) == 0
    text = (out / "report.md").read_text()
    first = text.splitlines()[0]
    assert first.startswith("# SMOKE RUN") and "steps <= 40" in first
    assert "figures/history.png" in text  # a random search: optimisation history
    fits = pd.read_csv(out / "fits.csv")  # no k_max axis: a header-only file, not 1 byte
    assert fits.empty and {"group", "law", "b", "aic"} <= set(fits.columns)
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["variant"]) == {"annealed", "fixed"}
    for name in ("error_curves", "history", "importance", "parallel", "ablation", "decay_rates",
                 "spectrum_heatmaps"):
        for ext in ("png", "pdf", "svg"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)
    html = (out / "report.html").read_text()
    assert "SMOKE RUN" in html and "<script src=" not in html


def test_report_of_the_schema_1_fixture(tmp_path):
    out = tmp_path / "v1"
    assert main([FIXTURE, "--out", str(out), "--n-boot", "10", "--no-html"]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# Sweep `fixture_v1`") and "| Gaussian |" in text  # the fits name groups
    assert not (out / "report.html").exists()
    assert "variant" not in pd.read_csv(out / "comparison.csv").columns  # old files: no variant column


def test_frequency_rows_are_ordered_by_shell_then_norm():
    from analysis.plots.spectra import frequency_order

    vecs = ["2,-1", "1,0", "0,2", "-1,1", "3", "1,1", "0,1", "2,0"]
    order = frequency_order(vecs)
    assert order[:2] == ["1,0", "0,1"] and order.index("1,1") < order.index("2,0") < order.index("2,-1")
    assert frequency_order(["10", "2", "1"]) == ["1", "2", "10"]  # 1-D: numeric, not string order


def test_headline_names_the_variant_instead_of_the_keys_it_sets(variant_sweep, tiny_sweep):
    from analysis.headline import headline_table

    table = headline_table(variant_sweep, eps=0.5)
    assert list(table.columns[:1]) == ["variant"] and set(table["variant"]) == {"annealed", "fixed"}
    assert not {"schedule", "bandwidth", "rate", "bandwidth_min"} & set(table.columns)
    assert "schedule" in headline_table(tiny_sweep).columns  # no stored variant: the keys themselves
