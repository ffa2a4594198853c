"""`--serial`: a grid sweep in one process without Ray, into the same folder layout and tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drift_sweeps import results
from drift_sweeps.run import main
from drift_sweeps.trial import FAULT_ENV

REPO = Path(__file__).resolve().parent.parent

# Ray cannot be imported in the child: proof that --serial never needs it.
NO_RAY = """
import sys
class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("ray is blocked in this test")
sys.meta_path.insert(0, _NoRay())
from drift_sweeps.run import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_RAY, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_serial_sweep_writes_the_tables_without_ray_and_continues_where_it_stopped(make_space, tmp_path):
    space = make_space("ser", axes={"kernel": ["gaussian", "laplacian"], "seed": [0, 1]})
    res = tmp_path / "res"
    proc = _cli(str(space), "--serial", "--results", str(res), env={FAULT_ENV: json.dumps({"step": 7, "seed": 1,
                                                                                           "kernel": "laplacian"})})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[4/4] serial_00003 kernel=laplacian seed=1: error" in proc.stdout, proc.stdout
    assert "| kernel |" in proc.stdout  # the comparison table, as after a Tune sweep
    root = str(res / "ser")
    trials = results.read_table(root, "trials").set_index("trial_id")
    assert sorted(trials.index) == [f"serial_{i:05d}" for i in range(4)]
    assert (trials["node"].str.endswith("/serial")).all()
    assert json.loads(trials.loc["serial_00000", "versions"])["torch"]
    ok = trials.drop("serial_00003")
    assert set(ok["status"]) <= {"converged", "censored"}
    assert trials.loc["serial_00003", "status"] == "error"
    assert "InjectedFailure" in trials.loc["serial_00003", "error"]
    curves = results.read_table(root, "curves")
    assert sorted(curves[curves["trial_id"] == "serial_00003"]["step"]) == [0, 5]  # up to the failure
    first = sorted(curves[curves["trial_id"] == "serial_00000"]["step"])
    assert first == [0, 5, 10, 15, 20][: len(first)]
    assert len(results.read_table(root, "spectra")) == len(curves) * 2  # k_max = 2: two frequencies
    spec = json.loads((res / "ser" / "sweep.json").read_text())
    assert spec["trial_count"] == 4 and len(spec["trial_configs"]) == 4
    assert (res / "ser" / "configs" / "serial_00002.json").exists()
    for table in results.TABLES:  # the sweep ended: each table's four files compacted into one
        assert [f.name.startswith(results.PART_PREFIX) for f in (res / "ser" / table).iterdir()] == [True], table

    # one trial's files gone (as if interrupted there): the same command runs that trial alone
    results.remove_trials(root, lambda tid: tid == "serial_00001")
    again = _cli(str(space), "--serial", "--results", str(res))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "continuing it" in again.stdout
    ran = [ln for ln in again.stdout.splitlines() if ln.startswith("[")]
    assert len(ran) == 1 and "serial_00001 kernel=gaussian seed=1" in ran[0], again.stdout
    assert len(results.read_table(root, "trials")) == 4

    done = _cli(str(space), "--serial", "--results", str(res))
    assert done.returncode == 0 and "finished (4 of 4 trials)" in done.stdout, done.stdout


def test_serial_refuses_searches_other_than_grid(capsys, make_space, tmp_path):
    space = make_space("opt", search="optuna", num_samples=2, metric="time_to_eps", mode="min",
                       axes={"bandwidth": {"uniform": [0.5, 2.0]}})
    rc = main([str(space), "--serial", "--results", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert rc == 2 and "--serial runs grid sweeps" in err and "optuna" in err, err


def test_a_failure_while_a_signal_is_pending_is_an_interrupt_not_an_error_row(make_space, tmp_path, monkeypatch):
    """A SIGINT landing inside a C call can surface as another exception (ctypes wraps it in ArgumentError):
    once a signal has come, a trial's exception stops the sweep and the trial gets no row (it runs again)."""
    from drift_sweeps.spaces import load_space
    from drift_sweeps.sweep.folder import SweepFolder
    from drift_sweeps.sweep.serial import run_serial

    space = load_space(str(make_space("sig", axes={"seed": [0, 1]})))
    folder = SweepFolder.under(str(tmp_path / "res"), "sig")
    folder.prepare(resume=False, overwrite=False, spec={"space": space.to_dict()})
    monkeypatch.setenv(FAULT_ENV, json.dumps({"step": 7, "seed": 0}))
    with pytest.raises(KeyboardInterrupt) as stop:
        run_serial(space, "sig", folder, {}, None, "{}", say=lambda _: None, stopped=lambda: True)
    assert "InjectedFailure" in str(stop.value)
    assert results.trial_ids(folder.root) == set()
    assert run_serial(space, "sig", folder, {}, None, "{}", say=lambda _: None) == 2  # no signal: an error row
    assert results.read_table(folder.root, "trials").set_index("seed").loc[0, "status"] == "error"
