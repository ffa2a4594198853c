"""A trial Tune ends although it has retries left is not an error of the trial.

Tune makes a failure final when it happens while the trial is PENDING (its actor died starting, e.g. on a
node going down), whatever `max_failures` says: the chaos test on a three-node cluster met it.  The
results writer then writes no row and hands the trial to the runner, which runs it again.
"""

from __future__ import annotations

from ray import tune
from ray.tune.experiment import Trial

from drift_sweeps import results
from drift_sweeps.spaces.space import parse_space
from drift_sweeps.sweep.folder import SweepFolder
from drift_sweeps.tune.writer import ResultsWriter


def _trial(space, point, trial_id: str, failures: int) -> Trial:
    tune.register_trainable("lost_noop", lambda config: None)
    trial = Trial("lost_noop", config=point, max_failures=space.max_failures, trial_id=trial_id, stub=True)
    trial.run_metadata.num_failures = failures
    return trial


def test_a_trial_ended_with_retries_left_has_no_row_and_is_handed_back(tmp_path, tiny_base):
    space = parse_space({"name": "lost", "description": "lost trials", "search": "grid", "base": tiny_base,
                         "axes": {"kernel": ["gaussian", "laplacian"]}, "max_failures": 2}, "test")
    folder = SweepFolder(str(tmp_path / "lost"))
    folder.prepare(False, False, {"space": space.to_dict()})
    writer = ResultsWriter(space, "lost", folder, None, "{}")
    first, second = space.grid_points()
    pending = _trial(space, first, "lost_00000", failures=2)  # the second failure: one retry left
    spent = _trial(space, second, "lost_00001", failures=3)  # every retry used: an error of the trial
    for trial in (pending, spent):
        writer.on_trial_error(0, [pending, spent], trial)
    assert writer.lost == {"lost_00000"}
    rows = results.read_table(folder.root, "trials")
    assert list(rows["trial_id"]) == ["lost_00001"]
    assert list(rows["status"]) == ["error"] and list(rows["attempts"]) == [3]


def test_a_large_sweep_runs_in_rounds_of_tuners_each_point_once(capsys, make_space, tmp_path, ray_tmp, monkeypatch):
    # Tune keeps every trial of a Tuner on the driver until fit returns: a large sweep is rounds of Tuners
    from drift_sweeps.run import main
    from drift_sweeps.sweep import tune_runner

    monkeypatch.setattr(tune_runner, "ROUND_TRIALS", 2)
    space = make_space("rounds", axes={"seed": list(range(5))})
    res = str(tmp_path / "res")
    rc = main([str(space), "--results", res, "--num-cpus", "2", "--temp-dir", ray_tmp])
    out = capsys.readouterr().out
    assert rc == 0, out
    rounds = [ln for ln in out.splitlines() if ln.startswith("round of trials")]
    assert [ln.split(" (")[0] for ln in rounds] == ["round of trials 1-2 of 5", "round of trials 3-4 of 5",
                                                   "round of trials 5-5 of 5"], out
    assert out.count("sweep rounds: 5 trials") == 1 and "[5/5]" in out  # one header; progress over the rounds
    rows = results.read_table(f"{res}/rounds", "trials")
    assert rows["trial_id"].is_unique and sorted(rows["seed"]) == list(range(5))
    assert set(rows["status"]) <= {"converged", "censored"}
    for table in ("curves", "spectra"):
        assert set(results.read_table(f"{res}/rounds", table)["trial_id"]) == set(rows["trial_id"]), table
    rc = main([str(space), "--results", res, "--num-cpus", "2", "--temp-dir", ray_tmp])
    assert rc == 0 and "finished (5 of 5 trials)" in capsys.readouterr().out
