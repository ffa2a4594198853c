"""Curves, spectra and samples go from the trial straight to the sweep folder; Tune carries scalars.

The trainable (`tune.adapter.make_trainable`) writes them through the folder's `TrialCurves`; the driver's
`ResultsWriter` writes the trials row last.  A trial that cannot reach the folder sends them with its last
report instead: both paths leave the same tables.
"""

from __future__ import annotations

import pandas as pd
import pytest
from ray import tune

from drift_sweeps import results
from drift_sweeps.spaces import SearchSpace
from drift_sweeps.spaces.space import parse_space
from drift_sweeps.spine import record
from drift_sweeps.sweep.folder import SweepFolder, TrialCurves
from drift_sweeps.tune import adapter
from drift_sweeps.tune.adapter import CURVES_KEY, HEAVY_KEYS, STORAGE_KEY, SUMMARY_KEY, make_trainable
from drift_sweeps.tune.writer import ResultsWriter


class _Store:
    def __init__(self, reachable: bool = True, fail: bool = False) -> None:
        self.reachable, self.fail, self.writes = reachable, fail, []

    def write(self, trial_id: str, reports: list) -> bool:
        if self.fail:
            raise OSError(f"/res: cannot write trial {trial_id}'s curves: No space left on device (ENOSPC)")
        if self.reachable:
            self.writes.append(len(reports))
        return self.reachable


def test_curves_are_written_at_the_end_and_every_flush_interval(monkeypatch):
    store = _Store()
    curves = adapter._Curves(store, "t1", every_report=False)
    for step in range(3):
        curves.add({"step": step})
    assert store.writes == []  # within FLUSH_S of the start: kept on the trial's side
    assert curves.final() == {} and store.writes == [3]
    monkeypatch.setattr(adapter, "FLUSH_S", 0.0)
    curves.add({"step": 3})
    assert store.writes == [3, 4]  # the interval has passed: written at once
    assert curves.final() == {} and store.writes == [3, 4]  # nothing new: no second write


def test_a_scheduled_trial_writes_at_every_report():
    store = _Store()
    curves = adapter._Curves(store, "t1", every_report=True)
    for step in range(3):
        curves.add({"step": step})
    assert store.writes == [1, 2, 3]


def test_out_of_reach_curves_travel_with_the_last_report():
    curves = adapter._Curves(_Store(reachable=False), "t1", every_report=True)
    curves.add({"step": 0})
    curves.add({"step": 5})
    assert curves.final() == {CURVES_KEY: [{"step": 0}, {"step": 5}]}
    assert adapter._Curves(None, "t1", every_report=False).final() == {CURVES_KEY: []}


def test_a_failed_write_is_reported_not_raised():
    curves = adapter._Curves(_Store(fail=True), "t1", every_report=True)
    curves.add({"step": 0})  # the trial goes on; the driver stops the sweep on the last report
    out = curves.final()
    assert set(out) == {STORAGE_KEY} and "ENOSPC" in out[STORAGE_KEY]


def test_trial_curves_reach_only_a_folder_with_its_spec(tmp_path):
    root = str(tmp_path / "sweep")
    assert TrialCurves(root).write("t1", [{"step": 0, "t": 0.0}]) is False
    results.write_json(root, "sweep.json", {"space": {}})
    store = TrialCurves(root)
    assert store.write("t1", [{"step": 0, "t": 0.0, "spectrum_k": [1], "spectrum_error": [0.5]}]) is True
    assert len(results.read_table(root, "spectra")) == 1
    import pickle

    assert pickle.loads(pickle.dumps(store))._reachable is None  # decided again in each process


class _Seen(tune.Callback):
    def __init__(self) -> None:
        self.results: list[dict] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append(dict(result))


def _space(tiny_base: dict, **extra) -> SearchSpace:
    return parse_space({"name": "side", "description": "trial-side curves", "search": "grid",
                        "base": {**tiny_base, "samples_kept": 4}, "axes": {"kernel": ["gaussian", "laplacian"]},
                        **extra}, "test")


def _sweep(tmp_path, space: SearchSpace, name: str, trial_side: bool) -> tuple[str, list[dict]]:
    folder = SweepFolder(str(tmp_path / name))
    folder.prepare(False, False, {"space": space.to_dict()})
    seen = _Seen()
    writer = ResultsWriter(space, name, folder, None, "{}")
    store = folder.curve_files() if trial_side else None
    tuner = tune.Tuner(
        tune.with_resources(make_trainable(space, store), {"cpu": 1}),
        param_space=adapter.param_space(space),
        tune_config=tune.TuneConfig(metric=space.metric, mode=space.mode, trial_dirname_creator=lambda t: t.trial_id),
        run_config=tune.RunConfig(storage_path=str(tmp_path / f"tune-{name}"), callbacks=[writer, seen], verbose=0),
    )
    tuner.fit()
    return folder.root, seen.results


def _tables(root: str) -> dict[str, pd.DataFrame]:
    trials = results.read_table(root, "trials")
    order = dict(zip(trials["trial_id"], trials["kernel"]))
    out = {}
    for table in ("curves", "spectra", "samples"):
        df = results.read_table(root, table)
        df = df.assign(trial_id=df["trial_id"].map(order)).sort_values(list(df.columns[:3])).reset_index(drop=True)
        out[table] = df
    return out


def test_under_a_scheduler_every_eval_reaches_tune(tmp_path, tiny_base, local_ray):
    """A scheduler decides on every report, so a space with one sends each eval's scalars (without one they go
    at most once per REPORT_EVERY_S: the test below)."""
    space = _space(tiny_base, scheduler={"asha": {"grace_period": 1, "reduction_factor": 2}})
    assert space.scheduler
    _, seen = _sweep(tmp_path, space, "asha", trial_side=True)
    evals = [r for r in seen if SUMMARY_KEY not in r]
    assert len(evals) == 2 * (tiny_base["steps"] // tiny_base["eval_every"] + 1)


def test_tune_carries_scalars_and_both_paths_write_the_same_tables(tmp_path, tiny_base, local_ray):
    space = _space(tiny_base)
    side, seen_side = _sweep(tmp_path, space, "side", trial_side=True)
    driver, seen_driver = _sweep(tmp_path, space, "driver", trial_side=False)
    per_trial = tiny_base["steps"] // tiny_base["eval_every"] + 1
    evals = [r for r in seen_side if SUMMARY_KEY not in r]
    # no scheduler: Tune hears a running trial at most once per REPORT_EVERY_S (the first eval at once); the
    # tables below still hold every eval, written from the trial's side or carried by the last report
    assert 2 <= len(evals) <= 2 * per_trial
    for r in seen_side:
        assert not set(HEAVY_KEYS) & set(r) and CURVES_KEY not in r, sorted(r)
    finals = [r for r in seen_driver if SUMMARY_KEY in r]
    assert len(finals) == 2 and all(len(r[CURVES_KEY]) == per_trial for r in finals)
    a, b = _tables(side), _tables(driver)
    for table in a:
        assert len(a[table]) > 0, table
        pd.testing.assert_frame_equal(a[table], b[table], check_exact=False, rtol=1e-6)
    assert set(results.read_table(side, "trials")["status"]) <= {record.CONVERGED, record.CENSORED}
