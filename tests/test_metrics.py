"""The metric registry (spine.metrics) is the one table: every entry is produced by a real trial of a target it
applies to, the Parquet and Tune names derive from it, and `converge_on` stops a trial on any 'min' metric."""

from __future__ import annotations

import pytest

from drift_sweeps import measure
from drift_sweeps.spine import metrics, record
from drift_sweeps.spine.config import ConfigError, TrialConfig
from drift_sweeps.trial import run_trial

# one small trial per metric source: the target it applies to
SOURCE_TRIALS = {
    "loop": dict(target="torus1d"),
    "spectrum": dict(target="torus1d"),
    "plane": dict(target="eight_gaussians"),
    "ot": dict(target="moons"),
    "modes": dict(target="mixture", dim=3, n_modes=4, layout="ring", separation=2.0, mode_std=0.2),
    "jacobian": dict(target="moons", kernel="laplacian"),
    "digits": dict(target="digits", model="conv", hidden=8, n_samples=32, n_data=32),
}
SMALL = dict(steps=2, eval_every=1, n_samples=64, n_data=64, n_eval=64)


def test_every_metric_source_has_a_measurer_and_a_trial():
    sources = {m.source for m in metrics.METRICS}
    assert sources - {"loop"} <= set(measure.MEASURERS), sources
    assert sources <= set(SOURCE_TRIALS)


@pytest.mark.parametrize("source", sorted({m.source for m in metrics.METRICS}))
def test_every_metric_is_produced_where_it_applies(source):
    reports = []
    run_trial(TrialConfig.from_dict({**SMALL, **SOURCE_TRIALS[source]}), reports.append)
    last = reports[-1]
    assert set(record.CURVE_METRICS) <= set(last)
    missing = [name for name in metrics.by_source(source) if last[name] is None]
    assert not missing, f"{source}: not produced: {missing}"


def test_record_names_derive_from_the_table():
    assert list(record.CURVE_METRICS) == [m.name for m in metrics.METRICS]
    for m in metrics.METRICS:
        assert (metrics.FINAL_PREFIX + m.name in record.SUMMARY_FIELDS) == m.final
        assert (m.name + metrics.FLOOR_SUFFIX in record.FLOOR_FIELDS) == m.floor


def test_converge_on_any_min_metric():
    base = dict(target="torus1d", k_max=1, steps=300, eval_every=5, n_samples=256, n_data=256, n_eval=256, dt=0.5)
    by_error = []
    default = run_trial(TrialConfig.from_dict(base), by_error.append)
    assert default["status"] == record.CONVERGED and by_error[-1]["worst_rel_error"] <= 0.1
    eps = 0.06  # the drift's RMS falls below this before the worst relative error reaches 0.1
    curves = []
    other = run_trial(TrialConfig.from_dict({**base, "converge_on": "drift_rms", "eps": eps}), curves.append)
    assert other["status"] == record.CONVERGED and len(curves) < len(by_error)
    assert curves[-1]["drift_rms"] <= eps < min([c["drift_rms"] for c in curves[1:-1]], default=1.0)
    assert curves[-1]["worst_rel_error"] > 0.1
    assert other["convergence_time"] == curves[-1]["t"]


def test_converge_on_rejects_names_that_are_not_min_metrics():
    for bad in ("step", "class_coverage", "nope"):
        with pytest.raises(ConfigError, match="converge_on"):
            TrialConfig.from_dict({"converge_on": bad})


def test_exact_w2_against_closed_forms():
    import torch

    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert abs(measure.exact_w2(x, x + torch.tensor([0.0, 2.0])) - 4.0) < 1e-12  # a translation by 2
    assert abs(measure.exact_w2(x, x.flip(0))) < 1e-12  # the same set in another order
    # two points each: the optimal matching pairs nearest neighbours, cost (0.1^2 + 0.2^2) / 2
    y = torch.tensor([[1.2, 0.0], [0.1, 0.0]], dtype=torch.float64)
    assert abs(measure.exact_w2(x, y) - 0.025) < 1e-12


def test_metrics_key_limits_what_an_evaluation_computes():
    cfg = dict(SMALL, **SOURCE_TRIALS["modes"], converge_on="mode_js")
    reports = []
    run_trial(TrialConfig.from_dict({**cfg, "metrics": "modes_covered"}), reports.append)
    last = reports[-1]
    assert last["modes_covered"] is not None and last["mode_js"] is not None  # asked for, and converge_on's
    assert last["w2_exact"] is None and last["sample_distance"] is not None  # not asked for; always measured
    with pytest.raises(ConfigError, match="unknown metric"):
        TrialConfig.from_dict({"metrics": "modes_covered,nope"})


def test_field_asymmetry_is_zero_for_gradient_fields_and_not_for_the_laplacian_per_side():
    def last(**cfg):
        reports = []
        run_trial(TrialConfig.from_dict({**SMALL, "target": "moons", "metrics": "field_asymmetry", **cfg}),
                  reports.append)
        return reports[-1]["field_asymmetry"]

    assert last(kernel="gaussian") < 1e-5  # float32 round-off: Tweedie's score difference is a gradient
    assert last(kernel="laplacian", normalization="sharp") < 1e-5
    assert last(kernel="laplacian") > 0.02
    reports = []
    run_trial(TrialConfig.from_dict({**SMALL, "target": "torus1d"}), reports.append)
    assert reports[-1]["field_asymmetry"] is None  # 1-D: every field is a gradient


def test_circle_energy_distance_by_sorting_equals_the_pairwise_one():
    """On the 1-D torus the energy distance's mean distances come from sorted samples and prefix sums: equal to
    the float64 pairwise minimum-image means, with antipodal pairs, repeated points, points at 0 and just below
    2 pi, and coordinates outside [0, 2 pi)."""
    import math

    import torch

    from drift_sweeps.core.geometry import distance
    from drift_sweeps.core.metrics import circle_mean_distance, energy_distance

    g = torch.Generator().manual_seed(7)
    x = torch.rand(301, 1, generator=g, dtype=torch.float64) * 2 * math.pi
    y = torch.rand(157, 1, generator=g, dtype=torch.float64) * 2 * math.pi
    y[:5, 0] = torch.remainder(x[:5, 0] + math.pi, 2 * math.pi)  # exactly opposite
    x[5:9] = x[9:13]  # repeated points
    x[13, 0], y[5, 0], y[6, 0] = 0.0, 2 * math.pi - 1e-12, 0.0
    y[7, 0] += 4 * math.pi  # unwrapped coordinates
    x[14, 0] -= 2 * math.pi
    for a, b in ((x, y), (x, x), (y, y), (y, x)):
        pairwise = float(distance(a, b, True).mean())
        assert abs(circle_mean_distance(a[:, 0], b[:, 0]) - pairwise) < 1e-12
    pairwise = float(2 * distance(x, y, True).mean() - distance(x, x, True).mean() - distance(y, y, True).mean())
    assert abs(energy_distance(x, y, True) - pairwise) < 1e-12
    assert energy_distance(x.float(), y.float(), True) == pytest.approx(pairwise, rel=1e-5)


@pytest.mark.parametrize("dim, k_max, n", [(1, 6, 3000), (2, 3, 2000), (2, 16, 700), (3, 4, 500), (4, 2, 900)])
def test_factorised_fourier_equals_the_direct_sum(dim, k_max, n, monkeypatch):
    """The empirical characteristic function from per-coordinate cos/sin tables (also in chunks of a few
    samples) equals the direct sum of exp(i k.x) in float64, for canonical frequencies, their negatives, a
    shuffled mix and all three together (repeated frequencies: in 1-D the only way past the direct sum)."""
    import torch

    from drift_sweeps.core import metrics as m

    g = torch.Generator().manual_seed(dim * 100 + k_max)
    x = (torch.rand(n, dim, generator=g, dtype=torch.float64) - 0.3) * 9  # coordinates outside [0, 2 pi) too
    freqs = m.frequencies(dim, k_max)
    mixed = torch.where(torch.rand(len(freqs), 1, generator=g) < 0.5, freqs, -freqs)[torch.randperm(len(freqs),
                                                                                                    generator=g)]
    monkeypatch.setattr(m, "FOURIER_DIRECT_TERMS", 0)  # the factorised form, whatever the size
    for chunk in (m.FOURIER_CHUNK, 1000):
        monkeypatch.setattr(m, "FOURIER_CHUNK", chunk)
        for ks in (freqs, -freqs, mixed, torch.cat([freqs, -freqs, mixed])):
            arg = x @ ks.to(torch.float64).T
            direct = torch.complex(torch.cos(arg).mean(0), torch.sin(arg).mean(0))
            fast = m.empirical_fourier(x, ks)
            assert fast.dtype == torch.complex128 and fast.shape == (len(ks),)
            assert float((fast - direct).abs().max()) < 1e-14
