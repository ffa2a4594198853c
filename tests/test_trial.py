"""The one trial loop, end to end on real torch."""

from __future__ import annotations

import math

import pytest

from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.spine import theory
from drift_sweeps.spine.record import CURVE_METRICS
from drift_sweeps.trial import FAULT_ENV, InjectedFailure, run_trial


def _run(**kw):
    reports: list[dict] = []
    summary = run_trial(TrialConfig.from_dict(kw), reports.append)
    return summary, reports


def test_annealed_gaussian_particles_converge_on_kmax2_torus() -> None:
    summary, reports = _run(k_max=2, schedule="exponential", bandwidth=2.0, rate=0.25, bandwidth_min=0.05,
                            n_samples=512, n_data=512, steps=300, eval_every=5)
    assert summary["status"] == "converged"
    assert reports[-1]["worst_rel_error"] <= 0.1
    predicted = theory.convergence_time("gaussian", 2, 0.1, 2.0, 0.25, 0.05)  # 5.35 (linear theory)
    assert 0.5 * predicted < summary["convergence_time"] < 2.0 * predicted
    for r in reports:
        assert set(CURVE_METRICS) <= set(r)
        assert len(r["spectrum_k"]) == len(r["spectrum_error"]) == 2
    assert [r["step"] for r in reports] == list(range(0, summary["steps_run"] + 1, 5))
    assert reports[0]["bandwidth"] == 2.0 and reports[-1]["bandwidth"] < 2.0


def test_mlp_generator_halves_the_sample_distance_on_a_2d_target() -> None:
    summary, reports = _run(model="mlp", target="gaussian_grid", k_max=2, bandwidth=0.5, steps=300,
                            eval_every=50, n_samples=256, n_data=256, n_eval=512, eps=0.01)
    assert reports[-1]["sample_distance"] <= 0.5 * reports[0]["sample_distance"]
    assert summary["status"] in ("converged", "censored")
    assert reports[0]["spectrum_k"] == [] and reports[0]["spectrum_error"] == []


def test_trials_are_reproducible() -> None:
    kw = dict(k_max=2, n_samples=128, n_data=128, steps=20, eval_every=10, seed=7)
    a, ra = _run(**kw)
    b, rb = _run(**kw)
    assert [r["spectrum_error"] for r in ra] == [r["spectrum_error"] for r in rb]
    c, rc = _run(**{**kw, "seed": 8})
    assert [r["spectrum_error"] for r in rc] != [r["spectrum_error"] for r in ra]


def test_non_finite_values_end_the_trial_as_diverged() -> None:
    summary, reports = _run(model="mlp", target="swiss_roll", lr=1e12, steps=50, eval_every=10,
                            n_samples=64, n_data=64, n_eval=64, operator="mmd", bandwidth=0.05)
    assert summary["status"] == "diverged"
    assert summary["convergence_time"] is None
    assert not math.isfinite(reports[-1]["worst_rel_error"]) or not math.isfinite(reports[-1]["loss"])


def test_budget_exhausted_is_censored() -> None:
    summary, _ = _run(k_max=4, bandwidth=1.0, steps=20, eval_every=10, n_samples=128, n_data=128)
    assert summary["status"] == "censored" and summary["convergence_time"] is None
    assert summary["steps_run"] == 20 and summary["t_final"] == pytest.approx(2.0)


def test_without_stop_gradient_runs_the_ablation() -> None:
    summary, reports = _run(k_max=2, stop_gradient=False, steps=20, eval_every=10, n_samples=128, n_data=128)
    assert summary["status"] in ("censored", "converged", "diverged")
    assert len(reports) >= 2


def test_injected_failure_raises_only_for_the_matching_trial(monkeypatch) -> None:
    monkeypatch.setenv(FAULT_ENV, '{"step": 3, "seed": 1}')
    with pytest.raises(InjectedFailure):
        run_trial(TrialConfig(steps=10, seed=1, n_samples=32, n_data=32))
    assert run_trial(TrialConfig(steps=10, seed=0, n_samples=32, n_data=32))["steps_run"] == 10


def test_high_dimensional_file_target_has_no_spectrum(tmp_path) -> None:
    """A plane data set of any dimension trains on the sample distance; no frequencies are enumerated."""
    import numpy as np

    path = tmp_path / "points.npy"
    np.save(path, (2.0 + 0.5 * np.random.default_rng(0).normal(size=(300, 32))).astype(np.float32))  # away from the N(0, I) start
    summary, reports = _run(target="file", target_path=str(path), steps=20, eval_every=5, n_samples=64,
                            n_data=64, n_eval=64, bandwidth=4.0, dt=0.5)
    assert reports[0]["spectrum_k"] == [] and reports[0]["spectrum_error"] == []
    assert summary["status"] in ("converged", "censored")
    assert reports[-1]["sample_distance"] < reports[0]["sample_distance"]
