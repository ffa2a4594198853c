"""Generators in the trial loop: a short trial per new target and per generator, and the recipe keys."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from drift_sweeps.spine import record
from drift_sweeps.spine.config import ConfigError, TrialConfig
from drift_sweeps.core.generators import GENERATORS
from drift_sweeps.core.loss import drift_loss, feature_scale, multi_bandwidth_drift
from drift_sweeps.core.operators import OPERATORS, FieldSpec, drift
from drift_sweeps.trial import run_trial

SHORT = dict(steps=12, eval_every=6, n_samples=64, n_data=64, n_eval=128, eps=0.001, hidden=16, layers=2)
NEW_TARGETS = ["bimodal_between", "bimodal_far", "bimodal_collapsed", "eight_gaussians", "moons", "digits"]


def _run(**kw):
    reports = []
    summary = run_trial(TrialConfig.from_dict({**SHORT, **kw}), reports.append)
    return summary, reports


@pytest.mark.parametrize("target", NEW_TARGETS)
def test_short_trial_per_new_target_reports_quality_and_floors(target):
    model = "conv" if target == "digits" else "mlp"
    summary, reports = _run(target=target, model=model, feature_norm=True)
    assert summary["status"] == record.CENSORED and summary["steps_run"] == 12
    for r in reports:
        assert set(record.CURVE_METRICS) <= set(r)
        assert all(math.isfinite(r[k]) for k in ("sample_distance", "sliced_w2", "mmd2", "worst_rel_error"))
    for k in ("sample_distance_floor", "sliced_w2_floor", "mmd2_floor"):
        assert 0 < summary[k] < summary["final_" + k[: -len("_floor")]]
    if target == "digits":
        assert summary["classifier_accuracy"] >= 0.95
        assert summary["frechet_distance_floor"] < summary["frechet_distance_noise"]
        assert summary["final_frechet_distance"] > summary["frechet_distance_floor"]
        assert 0 <= summary["final_class_coverage"] <= 1
    else:
        assert summary["frechet_distance_floor"] is None and reports[-1]["frechet_distance"] is None


@pytest.mark.parametrize("target,stratified", [("eight_gaussians", False), ("torus1d", True)])
def test_evaluation_noise_is_iid_on_the_plane_and_stratified_on_the_torus(target, stratified):
    """Plane metrics are compared with floors between i.i.d. data draws, so the generated draw is i.i.d. too
    (n |mean|^2 summed over the 32 noise dimensions ~ chi^2_32); the torus spectrum is measured by
    quasi-Monte-Carlo (that statistic far below 1)."""
    from drift_sweeps.trial import _Trial

    cfg = TrialConfig.from_dict(dict(target=target, model="mlp", noise_dim=32, n_eval=1024, steps=1, eval_every=1))
    z = _Trial(cfg).eval_noise.double()
    stat = float(z.shape[0] * z.mean(0).square().sum())
    assert (stat < 1.0) if stratified else (stat > 8.0), stat


def test_bimodal_initialisations_start_where_they_say():
    far, _ = _run(target="bimodal_far", model="mlp", steps=1, eval_every=1)
    between, _ = _run(target="bimodal_between", model="mlp", steps=1, eval_every=1)
    assert far["final_sample_distance"] > between["final_sample_distance"]


@pytest.mark.parametrize("model", GENERATORS.names())
def test_every_generator_trains_in_the_trial_loop(model):
    target = "digits" if model == "conv" else "torus1d"
    summary, reports = _run(target=target, model=model)
    assert summary["status"] == record.CENSORED
    assert all(math.isfinite(r["loss"]) for r in reports)


def test_generator_trials_are_reproducible_and_reach_eps_on_the_torus():
    cfg = dict(target="torus1d", model="fourier", k_max=2, bandwidth=0.3, dt=0.02, lr=2e-3, steps=400,
               eval_every=20, n_samples=256, n_data=256, n_eval=1024, eps=0.1, hidden=32, layers=2)
    a, ra = _run(**cfg)
    b, rb = _run(**cfg)
    assert [r["worst_rel_error"] for r in ra] == [r["worst_rel_error"] for r in rb]
    assert a["status"] == record.CONVERGED, a


def test_ema_and_separate_negatives_change_the_run_and_warmup_scales_the_first_step():
    base = dict(target="moons", model="mlp")
    plain, _ = _run(**base, ema=0.0)
    ema, _ = _run(**base, ema=0.9)
    assert plain["final_sample_distance"] != ema["final_sample_distance"]
    neg, _ = _run(**base, n_neg=32)
    assert neg["final_sample_distance"] != plain["final_sample_distance"]
    # a warm-up of many steps keeps the lr tiny: the generator hardly moves from its start
    slow, _ = _run(**base, ema=0.0, warmup_steps=10_000)
    start, _ = _run(**base, ema=0.0, steps=1, eval_every=1)
    assert abs(slow["final_sample_distance"] - start["final_sample_distance"]) < \
        abs(plain["final_sample_distance"] - start["final_sample_distance"])


def test_cosine_lr_decay_follows_its_closed_form_and_reaches_zero_at_the_budget():
    from drift_sweeps.steps import lr_factor

    cfg = TrialConfig.from_dict({**SHORT, "target": "moons", "model": "mlp", "steps": 100, "warmup_steps": 10,
                                 "lr_decay": "cosine"})
    assert [lr_factor(cfg, s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # the warm-up, unchanged
    for s in (19, 54, 79):  # after it: (1 + cos(pi (s + 1 - 10) / 90)) / 2
        assert lr_factor(cfg, s) == pytest.approx(0.5 * (1 + math.cos(math.pi * (s + 1 - 10) / 90)))
    assert lr_factor(cfg, 99) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(dataclasses.replace(cfg, lr_decay="none"), 99) == 1.0
    # in a trial: the decayed run ends elsewhere than the constant one, from the same start
    plain, _ = _run(target="moons", model="mlp", ema=0.0)
    decayed, _ = _run(target="moons", model="mlp", ema=0.0, lr_decay="cosine")
    assert decayed["final_sample_distance"] != plain["final_sample_distance"]
    with pytest.raises(ConfigError, match="lr_decay"):
        TrialConfig.from_dict({"lr_decay": "step"})


def test_recipe_keys_are_validated():
    with pytest.raises(ConfigError, match="feature_norm"):
        TrialConfig.from_dict({"target": "torus1d", "feature_norm": True})
    with pytest.raises(ConfigError, match="ema"):
        TrialConfig.from_dict({"ema": 1.0})
    with pytest.raises(ConfigError, match="model"):
        TrialConfig.from_dict({"model": "gan"})
    with pytest.raises(ConfigError, match="noise_sampler"):
        TrialConfig.from_dict({"noise_sampler": "sobol"})


@pytest.mark.parametrize("operator", OPERATORS.names())
def test_multi_bandwidth_sum_with_rms_normalisation_for_every_operator(operator):
    g = torch.Generator().manual_seed(0)
    x, pos = torch.randn(40, 2, generator=g), torch.randn(50, 2, generator=g) + 0.5
    field = FieldSpec("gaussian", 0.7, False, True, (0.5, 2.0), True, 20, backend="dense")
    with torch.no_grad():
        got = multi_bandwidth_drift(operator, x, pos, x, field)
        want = torch.zeros_like(x)
        for s in (0.5, 2.0):
            one = dataclasses.replace(field, bandwidth=0.7 * s, bandwidth_scales=(1.0,), drift_norm=False)
            v = drift(operator, x, pos, x, one)
            want += v / v.square().mean().sqrt()
    assert torch.allclose(got, want, atol=1e-5)
    # each normalised field has unit RMS, so the sum's RMS is at most the number of bandwidths
    assert float(got.square().mean().sqrt()) <= 2.0 + 1e-5


def test_feature_normalisation_makes_the_field_scale_free():
    g = torch.Generator().manual_seed(1)
    x, pos = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g) * 2 + 1
    field = FieldSpec("laplacian", 1.0, False, True, backend="dense")
    s = feature_scale(x, pos)
    pts = torch.cat([x[:512], pos[:512]])
    d = torch.cdist(pts, pts)
    assert float(d.sum() / (128 * 127)) / s == pytest.approx(math.sqrt(3), rel=1e-5)
    _, v1 = drift_loss(x, pos, "meanshift", field, feature_norm=True)
    _, v10 = drift_loss(10 * x, 10 * pos, "meanshift", field, feature_norm=True)
    assert torch.allclose(10 * v1, v10, atol=1e-4)  # V is returned in the samples' units


def test_last_report_carries_samples_and_results_store_them(tmp_path):
    from drift_sweeps import results

    summary, reports = _run(target="moons", model="mlp", samples_kept=20)
    assert all(record.SAMPLES_KEY not in r for r in reports[:-1])
    xs = reports[-1][record.SAMPLES_KEY]
    assert len(xs) == 20 and all(len(x) == 2 for x in xs)
    root = str(tmp_path / "sweep")
    results.write_samples(root, "t1", reports)
    assert results.write_samples(root, "t2", reports[:-1]) is None  # no samples, no file
    df = results.read_table(root, "samples")
    assert len(df) == 20 and set(df["step"]) == {reports[-1]["step"]}
    stored = torch.tensor([list(v) for v in df.sort_values("index")["x"]])
    assert torch.allclose(stored.double(), torch.tensor(xs, dtype=torch.float64))
    none, rep = _run(target="moons", model="mlp", samples_kept=0)
    assert record.SAMPLES_KEY not in rep[-1]


def test_stop_at_convergence_false_runs_the_budget_and_keeps_the_first_convergence_time():
    """A torus trial that meets eps at its first evaluation: by default it stops there; with
    stop_at_convergence false it runs every step and records that first evaluation's time."""
    base = dict(target="torus1d", k_max=2, n_samples=64, n_data=64, n_eval=64, steps=12, eval_every=4, dt=0.1,
                eps=0.99, bandwidth=1.0)
    stopped, _ = _run(**base)
    assert stopped["status"] == record.CONVERGED and stopped["steps_run"] == 4
    assert stopped["convergence_time"] == pytest.approx(0.4)
    full, reports = _run(**base, stop_at_convergence=False)
    assert full["status"] == record.CONVERGED and full["steps_run"] == 12
    assert full["convergence_time"] == pytest.approx(0.4) and full["t_final"] == pytest.approx(1.2)
    assert [r["step"] for r in reports] == [0, 4, 8, 12]
    assert full["final_worst_rel_error"] == reports[-1]["worst_rel_error"]
