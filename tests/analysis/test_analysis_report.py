"""Figures render with Agg to non-empty PNG/PDF/SVG files; the report runs on a real tiny sweep."""

from __future__ import annotations

import math
import os
import re

import matplotlib
import pandas as pd
import pytest

from analysis.plots import ablation, curves, rates, scaling, spectra
from analysis.report import main
from analysis.tables import analyse_sweep


@pytest.fixture(scope="module", params=[None, 0.3], ids=["run-eps", "eps-0.3"])
def analysis(request, tiny_sweep):
    # at the run's eps too few K converge for a fit; at 0.3 both groups converge at two K values
    return analyse_sweep(tiny_sweep, eps=request.param, n_boot=20)


def _check(paths):
    assert sorted(os.path.splitext(p)[1] for p in paths) == [".pdf", ".png", ".svg"]
    for p in paths:
        assert os.path.getsize(p) > 1000, p


def test_backend_is_agg():
    assert matplotlib.get_backend().lower() == "agg"


def test_scaling_figure(analysis, tmp_path):
    data = scaling.scaling_data(analysis)
    assert set(data["points"]["group"]) == set(analysis.times["group"])
    if analysis.eps == 0.3:
        assert data["laws"]["best"].any()
    _check(scaling.draw_scaling(data, str(tmp_path / "scaling")))
    _check(scaling.draw_scaling_by_group(data, str(tmp_path / "scaling_by_group")))


def test_spectrum_heatmaps(analysis, tmp_path):
    trials = spectra.default_heatmap_trials(analysis)
    assert len(trials) == 2  # one per group
    data = spectra.spectrum_heatmap_data(analysis.sweep, trials, analysis.times, analysis.labels)
    assert data[0]["grid"].shape[0] == 4  # k = 1..4 at the largest k_max
    assert list(data[0]["grid"].index) == ["1", "2", "3", "4"]  # low frequencies first (bottom row)
    assert "K=4" in data[0]["title"] and "None" not in data[0]["title"]
    times = analysis.times.set_index("trial_id")
    for d in data:  # the contour at the trial's eps; the dashed line where it converged, none where it did not
        assert d["eps"] == pytest.approx(times.loc[d["trial_id"], "eps"])
        assert math.isnan(d["time"]) != bool(times.loc[d["trial_id"], "event"])
    _check(spectra.draw_spectrum_heatmaps(data, str(tmp_path / "heat")))
    _check(spectra.draw_spectrum_heatmaps([], str(tmp_path / "heat_empty")))


def test_heatmap_keeps_the_frequencies_that_carry_error():
    # a 2-D K_max = 16 spectrum: 544 frequencies, 64 target modes far above the sampling noise
    e0 = pd.Series([1e-5] * 480 + [6e-3] * 63 + [8e-3], index=[f"f{i}" for i in range(544)])
    shown = spectra.shown_frequencies(e0)
    assert len(shown) == 64 and shown[0] == "f543" and set(shown) == {f"f{i}" for i in range(480, 544)}
    small = e0.iloc[:spectra.HEATMAP_ROWS]
    assert list(spectra.shown_frequencies(small)) == list(small.index)  # up to HEATMAP_ROWS: every row
    flat = pd.Series(1.0, index=[f"f{i}" for i in range(300)])
    assert len(spectra.shown_frequencies(flat)) == spectra.HEATMAP_ROWS  # never more rows than that


def test_decay_rate_figure(analysis, tmp_path):
    data = rates.decay_rate_data(analysis)
    assert len(data["rates"]) > 0  # the tiny sweep's torus trials have modes to fit
    _check(rates.draw_decay_rates(data, str(tmp_path / "rates")))
    empty = {**data, "rates": data["rates"].iloc[:0], "curves": data["curves"].iloc[:0]}
    _check(rates.draw_decay_rates(empty, str(tmp_path / "rates_empty")))


def test_error_curve_figure(analysis, tmp_path):
    data = curves.error_curve_data(analysis)
    band = data["band"]
    assert set(band["group"]) == set(analysis.times["group"]) and set(band["K"]) == {1, 2, 4}
    assert (band["lo"] <= band["median"]).all() and (band["median"] <= band["hi"]).all()
    assert band["n"].max() == 2  # two seeds per (group, K) at a common time
    _check(curves.draw_error_curves(data, str(tmp_path / "curves")))


def test_ablation_figure(analysis, tmp_path):
    data = ablation.ablation_data(analysis)
    assert data["k"] == 4
    _check(ablation.draw_ablation(data, str(tmp_path / "ablation")))


def test_decay_rates_are_measured_and_predicted(analysis):
    r = analysis.rates
    assert len(r) and r["usable"].any()
    u = r[r["usable"]]
    assert (u["rate_measured"] > 0).all() and (u["rate_predicted"] > 0).all()
    # the linear theory should hold to within a factor ~2 on the modes above the noise threshold
    ratio = (u["rate_measured"] / u["rate_predicted"]).median()
    assert 0.5 < ratio < 2.0


def test_report_cli(tiny_sweep, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([tiny_sweep, "--out", str(out), "--eps", "0.3", "--n-boot", "20",
                 "--baseline", "schedule=constant"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| schedule |") and "report.md" in printed
    text = (out / "report.md").read_text()
    assert text.startswith("# Sweep `tiny`")  # not a smoke run: the tiny sweep has no sweep.json
    assert "## Error against time" in text and "## Search view" in text
    assert "figures/importance.png" in text and "figures/parallel.png" in text
    assert "figures/history.png" not in text  # grid sweep: no optimisation history
    assert "annealed h0=2 r=0.25" in text  # groups are named, not value tuples
    for heading in ("## Comparison", "## Times per k_max", "## Scaling-law fits", "## Per-mode decay rates",
                    "## Per-frequency error", "## Ablation view", "## Notes"):
        assert heading in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert any(link.endswith(".png") for link in links)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 0, link
    assert "No figure of generated samples" in text  # a particle sweep: no samples drawn
    comparison = pd.read_csv(out / "comparison.csv")
    assert len(comparison) == 2 and {"median_T", "best_law", "speedup"} <= set(comparison.columns)
    assert comparison.loc[comparison["schedule"] == "constant", "speedup"].iloc[0] == 1.0
    tex = (out / "comparison.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\bottomrule" in tex


def test_report_cli_default_out_and_errors(tiny_sweep, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([tiny_sweep, "--n-boot", "0", "--baseline", "schedule=nope"]) == 2
    assert "matches 0 groups" in capsys.readouterr().err
