"""Packed trials (`pack: P`): several configurations trained in lockstep in one Ray trial, each with its own
id, row, status and early stop, equal to the same configurations run alone."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from drift_sweeps import results
from drift_sweeps.core.field import FieldSpec
from drift_sweeps.core.loss import drift_losses
from drift_sweeps.spaces import SpaceError
from drift_sweeps.spaces.space import parse_space
from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.sweep.packing import make_packs
from drift_sweeps.trial import run_pack, run_trial

from drift_sweeps.run import main

def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


TINY = dict(target="torus1d", k_max=2, n_samples=128, n_data=128, n_eval=128, dt=0.2, steps=20, eval_every=5,
            bandwidth=1.0)


def _runs(cfgs: list[TrialConfig]) -> tuple[list, list, list, list]:
    alone_reports: list[list] = [[] for _ in cfgs]
    alone = [run_trial(c, alone_reports[i].append) for i, c in enumerate(cfgs)]
    packed_reports: list[list] = [[] for _ in cfgs]
    finished: list[int] = []
    packed = run_pack(cfgs, [r.append for r in packed_reports], on_finish=lambda j, s: finished.append(j))
    assert sorted(finished) == list(range(len(cfgs)))
    return alone, packed, alone_reports, packed_reports


def _same(a: dict, b: dict) -> None:
    for key, value in a.items():
        if key == "wall_time_s":
            continue
        if isinstance(value, float) and math.isfinite(value):
            assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
        else:
            assert b[key] == value, key


@pytest.mark.parametrize("extra", [
    {},  # the spectral torus backend
    {"kernel": "laplacian", "schedule": "exponential", "rate": 0.25, "bandwidth_min": 0.05, "eps": 0.2},
    {"target": "moons", "model": "mlp", "hidden": 32, "steps": 12, "eval_every": 4},
    {"target": "eight_gaussians", "model": "resmlp", "hidden": 32, "steps": 8, "eval_every": 4, "feature_norm": True,
     "bandwidth_scales": [0.5, 2.0], "drift_norm": True, "ema": 0.9, "warmup_steps": 3},
], ids=["torus", "annealed-laplacian", "mlp", "resmlp"])
def test_a_pack_equals_its_configurations_run_alone(extra):
    # seeds, bandwidths and budgets differ inside the pack; every run stops on its own
    cfgs = [TrialConfig(**{**TINY, **extra, "seed": s, "steps": extra.get("steps", 20) + 4 * s}) for s in range(2)]
    alone, packed, ra, rp = _runs(cfgs)
    for a, b, x, y in zip(alone, packed, ra, rp):
        _same(a, b)
        assert [r["step"] for r in x] == [r["step"] for r in y]
        for r, q in zip(x, y):
            _same({k: v for k, v in r.items() if k != "samples"}, q)


def test_runs_stop_on_their_own_inside_a_pack():
    cfgs = [TrialConfig(**{**TINY, "eps": 0.5, "steps": 60, "seed": 0}),
            TrialConfig(**{**TINY, "eps": 1e-9, "steps": 60, "seed": 1})]
    alone, packed, _, rp = _runs(cfgs)
    assert [s["status"] for s in packed] == ["converged", "censored"]
    assert rp[0][-1]["step"] < rp[1][-1]["step"] == 60
    assert [s["convergence_time"] for s in packed] == [s["convergence_time"] for s in alone]


@pytest.mark.parametrize("operator", ["meanshift", "deng", "sinkhorn", "score"])
@pytest.mark.parametrize("periodic", [False, True])
def test_the_batched_field_equals_one_call_per_trial(operator, periodic):
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(64, 2, generator=gen) for _ in range(4)]
    pos = [torch.rand(80, 2, generator=gen) for _ in range(4)]
    field = FieldSpec(kernel="laplacian", bandwidth=0.3, periodic=periodic)
    looped = drift_losses(xs, pos, [None] * 4, operator, field, batched=False)
    batched = drift_losses(xs, pos, [None] * 4, operator, field, batched=True)  # vmap where the operator allows
    for (la, va), (lb, vb) in zip(looped, batched):
        assert float((va - vb).abs().max()) <= 1e-5 * float(va.abs().max())
        assert float(lb) == pytest.approx(float(la), rel=1e-5)


def _space(pack: int, **extra) -> object:
    return parse_space({"name": "packed", "search": "grid", "pack": pack, "base": {**TINY, "samples_kept": 2},
                        "axes": {"kernel": ["gaussian", "laplacian"], "seed": [0, 1, 2]}, **extra}, "test")


def test_packs_share_everything_but_the_free_keys():
    space = _space(2)
    packs = make_packs(space, list(space.grid_points()))
    assert [len(p) for p in packs] == [2, 1, 2, 1]  # per kernel: seeds 0-1, then 2
    assert all(len({p["kernel"] for p in pack}) == 1 for pack in packs)


def test_pack_needs_a_grid_without_a_scheduler():
    with pytest.raises(SpaceError, match="needs search: grid"):
        parse_space({"name": "p", "search": "random", "pack": 4, "base": TINY,
                     "axes": {"lr": {"loguniform": [1e-4, 1e-2]}}}, "test")
    with pytest.raises(SpaceError, match="scheduler"):
        _space(4, scheduler="asha")
    with pytest.raises(SpaceError, match="pack"):
        _space(0)
    assert _space(1).with_pack(8).pack == 8


def test_a_packed_sweep_writes_the_rows_of_the_unpacked_one(capsys, make_space, tmp_path, ray_tmp):
    axes = {"kernel": ["gaussian", "laplacian"], "seed": [0, 1, 2]}
    # two CPUs a trial: both runners give it two torch threads (the test process itself runs on one)
    space = make_space("packed", axes=axes, resources={"cpu": 2}, base_extra={"samples_kept": 2})
    res = str(tmp_path / "res")
    rc, out = run_cli(capsys, str(space), "--results", res, "--num-cpus", "2", "--temp-dir", ray_tmp,
                      "--pack", "3", "--name", "packed")
    assert rc == 0, out
    assert "6 trials in 2 packs of up to 3 configurations" in out
    rc, out = run_cli(capsys, str(space), "--results", res, "--serial", "--name", "alone")
    assert rc == 0, out
    keys = ["kernel", "seed"]
    packed, alone = (results.read_table(f"{res}/{n}", "trials").sort_values(keys).reset_index(drop=True)
                     for n in ("packed", "alone"))
    assert packed["trial_id"].is_unique and len(packed) == 6
    for col in ("status", "convergence_time", "final_worst_rel_error", "final_sample_distance", "steps_run"):
        pd.testing.assert_series_equal(packed[col], alone[col], check_exact=False, rtol=1e-6)
    assert list(packed["threads"]) == list(alone["threads"]) == [2] * 6
    for table in ("curves", "spectra", "samples"):
        got = results.read_table(f"{res}/packed", table)
        assert set(got["trial_id"]) == set(packed["trial_id"]), table
        assert len(got) == len(results.read_table(f"{res}/alone", table)), table
    # the same command again finds every configuration finished
    rc, again = run_cli(capsys, str(space), "--results", res, "--pack", "3", "--name", "packed")
    assert rc == 0 and "finished (6 of 6 trials)" in again


@pytest.fixture
def failing_long_runs(monkeypatch) -> None:
    """Trials with steps = 20 raise at step 12 (set before Ray starts its workers)."""
    import json

    from drift_sweeps.trial import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, json.dumps({"step": 12, "steps": 20}))


def test_a_failing_pack_keeps_its_finished_rows_and_records_the_rest_as_errors(capsys, make_space, tmp_path,
                                                                               failing_long_runs, local_ray):
    space = make_space("packfail", axes={"steps": [5, 20]}, pack=2, max_failures=0, base_extra={"eps": 1e-9})
    res = str(tmp_path / "res")
    rc, out = run_cli(capsys, str(space), "--results", res)
    assert rc == 0, out  # the sweep goes on
    trials = results.read_table(f"{res}/packfail", "trials").set_index("steps")
    assert trials.loc[5, "status"] == "censored" and trials.loc[5, "steps_run"] == 5
    assert trials.loc[20, "status"] == "error" and "InjectedFailure" in trials.loc[20, "error"]
    assert list(trials["threads"]) == [1, 1]  # the error row's from the pack's reports
    curves = results.read_table(f"{res}/packfail", "curves")
    assert curves[curves["trial_id"] == trials.loc[20, "trial_id"]]["step"].max() == 10  # its curves so far
    rc, again = run_cli(capsys, str(space), "--results", res)
    assert rc == 0 and "finished (2 of 2 trials)" in again
