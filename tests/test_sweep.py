"""The sweep runner against real Ray: embedded and two-node clusters, Optuna, failures, resume, S3.

Every test starts its own tiny Ray (2 CPUs, temp folders of its own) and shuts it down; trials
are ~20 steps of 128 particles.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

from drift_sweeps import results
from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.run import main
from drift_sweeps.spine.record import time_to_eps
from drift_sweeps.trial import FAULT_ENV

REPO = Path(__file__).resolve().parent.parent


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    """Run the CLI in this process; (exit code, stdout + stderr)."""
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def expected_reports(steps_run: int, eval_every: int) -> int:
    """Evaluations of a trial that ran `steps_run` steps: every eval_every, plus the last step."""
    return len(range(0, steps_run + 1, eval_every)) + (steps_run % eval_every != 0)


def check_tables(sweep_root: str, n_trials: int, n_freqs: int) -> pd.DataFrame:
    """The three tables agree with each other, once per trial and eval step; returns trials."""
    trials = results.read_table(sweep_root, "trials")
    curves = results.read_table(sweep_root, "curves")
    spectra = results.read_table(sweep_root, "spectra")
    assert len(trials) == n_trials and trials["trial_id"].is_unique
    assert not curves.duplicated(["trial_id", "step"]).any()
    assert not spectra.duplicated(["trial_id", "step", "k_vec"]).any()
    assert set(curves["trial_id"]) <= set(trials["trial_id"])
    finished = trials[trials["status"] != "error"]
    per_trial = curves.groupby("trial_id").size()
    for row in finished.itertuples():
        assert per_trial[row.trial_id] == expected_reports(row.steps_run, row.eval_every), row.trial_id
    assert len(spectra) == len(curves) * n_freqs
    return trials


def test_time_to_eps_ranks_unconverged_trials():
    assert time_to_eps(t=8.0, worst_rel_error=0.05, eps=0.1, t_budget=40) == 8.0
    assert time_to_eps(t=10.0, worst_rel_error=0.1**0.5, eps=0.1, t_budget=40) == pytest.approx(20.0)
    assert time_to_eps(t=10.0, worst_rel_error=0.5, eps=0.1, t_budget=40) > time_to_eps(10.0, 0.3, 0.1, 40)
    for worst in (1.0, 1.5, float("nan")):
        assert time_to_eps(t=10.0, worst_rel_error=worst, eps=0.1, t_budget=40) == 400.0
    assert time_to_eps(t=0.0, worst_rel_error=1.0, eps=0.1, t_budget=40) == 400.0


def test_tiny_sweep_on_embedded_ray_writes_three_readable_tables(capsys, make_space, tmp_path, ray_tmp):
    space = make_space("tiny", axes={"kernel": ["gaussian", "laplacian"]}, variants=[
        {"name": "fixed", "schedule": "constant"},
        {"name": "annealed", "schedule": "exponential", "rate": 0.25, "bandwidth_min": 0.05},
    ])
    res = str(tmp_path / "res")
    # no --address: there is no running cluster (RAY_TMPDIR keeps others' clusters out), so Ray is embedded
    rc, out = run_cli(capsys, str(space), "--results", res, "--num-cpus", "2", "--temp-dir", ray_tmp)
    assert rc == 0, out
    assert out.splitlines()[0] == "Ray: no running cluster found; starting an embedded local Ray (2 CPUs)"
    root = f"{res}/tiny"
    trials = check_tables(root, n_trials=4, n_freqs=2)

    # every config key is a column, with the values of the grid
    for key in TrialConfig.keys():
        assert key in trials.columns, key
    assert set(zip(trials["kernel"], trials["schedule"])) == {
        (k, s) for k in ("gaussian", "laplacian") for s in ("constant", "exponential")}
    assert set(trials["status"]) <= {"converged", "censored"}
    assert (trials["attempts"] == 1).all() and trials["error"].isna().all()
    assert trials["node"].str.len().gt(0).all() and (trials["device_used"] == "cpu").all()
    assert (trials["schema_version"] == results.SCHEMA_VERSION).all()
    assert json.loads(trials["versions"].iloc[0])["ray"] == "2.60.0"
    assert set(trials["swept_axes"]) == {"kernel,schedule,rate,bandwidth_min"}

    # the three readers agree on whole-table reads
    for table in results.TABLES:
        folder = f"{root}/{table}"
        n_pandas = len(pd.read_parquet(folder))
        n_arrow = pads.dataset(folder, format="parquet").count_rows()
        n_duck = duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall()[0][0]
        assert n_pandas == n_arrow == n_duck > 0, table
        assert not [p for p in os.listdir(folder) if p.startswith(".tmp-")]

    # the spec and every trial config were written next to the results
    spec = json.loads(Path(root, "sweep.json").read_text())
    assert spec["trial_count"] == 4 and len(spec["trial_configs"]) == 4
    configs = {p.stem: json.loads(p.read_text()) for p in Path(root, "configs").glob("*.json")}
    assert set(configs) == set(trials["trial_id"])
    # the comparison table and the file locations are printed
    assert re.search(r"^\| kernel \| variant \|", out, re.M), out
    assert f"{root}/{{trials,curves,spectra}}/" in out

    # the same command again reports the finished sweep (its table) and exits 0, without starting Ray
    rc, again = run_cli(capsys, str(space), "--results", res, "--address", "local")
    assert rc == 0, again
    assert "finished (4 of 4 trials)" in again and "Ray:" not in again
    assert re.search(r"^\| kernel \| variant \|", again, re.M)
    assert len(results.read_table(root, "trials")) == 4
    # a different sweep under the same name is refused before Ray starts, saying what differs
    rc, out = run_cli(capsys, str(space), "--results", res, "--set", "steps=10")
    assert rc == 2 and "holds a different sweep" in out and "base" in out and "Ray:" not in out


def test_two_node_cluster_places_trials_on_both_nodes(capsys, make_space, tmp_path, ray_tmp):
    from ray.cluster_utils import Cluster

    node = dict(num_cpus=1, object_store_memory=100 * 2**20, memory=2**30, temp_dir=ray_tmp)
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        # trials long enough (~seconds) that the second node's worker starts before the first drains the queue
        space = make_space("two_nodes", axes={"seed": [0, 1, 2, 3]}, base_extra={"steps": 400, "eval_every": 50, "eps": 0.001})
        # no --address: the CLI finds the running cluster by itself
        rc, out = run_cli(capsys, str(space), "--results", str(tmp_path / "res"))
        assert rc == 0, out
        assert out.splitlines()[0].startswith("Ray: joining the running cluster at "), out
        assert out.splitlines()[0].endswith(":" + cluster.address.rsplit(":", 1)[1])
        assert "2 node(s), 2 CPUs" in out
        trials = check_tables(str(tmp_path / "res" / "two_nodes"), n_trials=4, n_freqs=2)
        assert trials["node"].nunique() == 2, trials["node"].tolist()
        assert trials["node"].str.split("/").str[0].nunique() == 1  # same host, distinct Ray nodes
    finally:
        cluster.shutdown()


def test_optuna_sweep_reports_its_best_config(capsys, make_space, tmp_path, local_ray):
    space = make_space(
        "tpe", search="optuna", num_samples=4, seed=3, max_concurrent=2,
        scheduler={"asha": {"grace_period": 1, "reduction_factor": 2}},
        base_extra={"schedule": "exponential", "bandwidth_min": 0.05, "steps": 30},
        axes={"bandwidth": {"loguniform": [0.5, 4.0]}, "rate": {"loguniform": [0.05, 1.0]}},
    )
    rc, out = run_cli(capsys, str(space), "--results", str(tmp_path / "res"))
    assert rc == 0, out
    trials = results.read_table(str(tmp_path / "res" / "tpe"), "trials")
    assert len(trials) == 4 and trials["bandwidth"].between(0.5, 4.0).all() and trials["rate"].between(0.05, 1).all()
    m = re.search(r"^best trial: (\S+)\s+time_to_eps = (\S+)\s+params: (.*)$", out, re.M)
    assert m, out
    best = json.loads(m.group(3))
    assert set(best) == {"bandwidth", "rate"}
    row = trials.set_index("trial_id").loc[m.group(1)]
    assert row["bandwidth"] == pytest.approx(best["bandwidth"]) and row["rate"] == pytest.approx(best["rate"])
    assert json.loads(Path(tmp_path, "res", "tpe", "sweep.json").read_text())["space"]["search"] == "optuna"


@pytest.fixture
def failing_seed_1(monkeypatch) -> None:
    """Trials with seed 1 raise at step 12 (the test-only failure injection; set before Ray starts its workers)."""
    monkeypatch.setenv(FAULT_ENV, json.dumps({"step": 12, "seed": 1}))


def test_failing_trial_is_retried_then_recorded_as_error(capsys, make_space, tmp_path, failing_seed_1, local_ray):
    space = make_space("flaky", axes={"seed": [0, 1]}, max_failures=1, base_extra={"eps": 0.01})
    rc, out = run_cli(capsys, str(space), "--results", str(tmp_path / "res"))
    assert rc == 0, out  # the sweep goes on
    assert "retrying" in out
    root = str(tmp_path / "res" / "flaky")
    trials = check_tables(root, n_trials=2, n_freqs=2).set_index("seed")
    ok, bad = trials.loc[0], trials.loc[1]
    assert ok["status"] in ("converged", "censored") and ok["attempts"] == 1
    assert bad["status"] == "error" and bad["attempts"] == 2
    assert "InjectedFailure" in bad["error"] and "step 12" in bad["error"]
    curves = results.read_table(root, "curves")
    kept = curves[curves["trial_id"] == bad["trial_id"]]["step"].tolist()
    assert sorted(kept) == [0, 5, 10]  # the last attempt's curve up to the failure, once


def _wait_for_trials(root: Path, n: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(results.trial_ids(str(root))) >= n:  # written files only, not a writer's hidden temporary
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early (rc {proc.returncode}): {proc.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} trials written in {timeout} s")


class _Planted:
    """Unpickling this creates the file `path` (what a planted pickle could do, harmlessly)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _ray_processes(text: str, session: int) -> list[str]:
    """Command lines of the live processes mentioning `text` or in process session `session`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if state != "Z" and (text in cmd or os.getsid(int(entry)) == session):
                out.append(f"{entry}: {cmd[:120]}")
        except (OSError, IndexError):
            continue
    return out


def _wait_until_gone(text: str, session: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = _ray_processes(text, session)
        if not left:
            return []
        time.sleep(0.5)
    return _ray_processes(text, session)


def test_resume_after_sigkill_runs_every_trial_exactly_once(make_space, kill_leftovers, tmp_path, ray_tmp):
    # 6 trials of a few seconds, one at a time, so the kill lands mid-sweep
    space = make_space("killed", axes={"seed": list(range(6))}, max_concurrent=1,
                        base_extra={"steps": 150, "eps": 0.01})
    res = tmp_path / "res"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "drift_sweeps.run", str(space), "--results", str(res), "--address", "local",
           "--num-cpus", "2"]
    first_tmp = os.path.join(ray_tmp, "first")
    proc = subprocess.Popen([*cmd, "--temp-dir", first_tmp], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_trials(res / "killed", 2, proc, timeout=150)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        survivors = _wait_until_gone(first_tmp, proc.pid, timeout=20)  # the embedded Ray's watchdog stops them
    finally:
        if proc.poll() is None:
            proc.kill()
        left = kill_leftovers(first_tmp, session=proc.pid)  # Ray helpers the driver left behind
    assert not survivors, survivors
    written_before = len(results.trial_ids(str(res / "killed")))
    assert 2 <= written_before < 6, (written_before, left)

    # whoever can write the results folder must not run code on the next resume: plant a pickle that
    # would create a file when loaded, where Tune keeps its (pickled) experiment state
    marker = tmp_path / "pwned"
    tune_dir = res / "killed" / "tune"
    tune_dir.mkdir(parents=True, exist_ok=True)
    (tune_dir / "tuner.pkl").write_bytes(pickle.dumps(_Planted(str(marker))))

    done = subprocess.run([*cmd, "--resume", "--temp-dir", os.path.join(ray_tmp, "second")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert not marker.exists(), "--resume loaded a pickle from the results folder"
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout
    assert re.search(r"resuming \([2-5] finished, [1-4] to run\)", done.stdout), done.stdout
    trials = check_tables(str(res / "killed"), n_trials=6, n_freqs=2)
    assert sorted(trials["seed"]) == list(range(6))
    assert len(list((res / "killed" / "configs").glob("*.json"))) == 6


def test_results_on_s3(capsys, make_space, s3_endpoint, local_ray):
    import boto3

    space = make_space("remote", axes={"kernel": ["gaussian", "cauchy"]})
    uri = "s3://drift/sweeps"
    rc, out = run_cli(capsys, str(space), "--results", uri)
    assert rc == 0, out
    assert "s3://drift/sweeps/remote/{trials,curves,spectra}/" in out
    check_tables(f"{uri}/remote", n_trials=2, n_freqs=2)
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket="drift", Prefix="sweeps/remote/")["Contents"]]
    assert "sweeps/remote/sweep.json" in keys
    # the sweep ended: its two trials' files compacted into one (atomically, on S3 too)
    assert [k.split("/")[-1].startswith("part-") for k in keys
            if k.startswith("sweeps/remote/trials/") and k.endswith(".parquet")] == [True]
    assert not [k for k in keys if "/.tmp-" in k]
    assert any(k.startswith("sweeps/remote/tune/experiment_state") for k in keys)
    # a finished sweep on S3 resumes to the same rows (Tune's state is found under the s3:// path)
    rc, out = run_cli(capsys, "remote", "--results", uri, "--resume", "--name", "remote")
    assert rc == 0, out
    check_tables(f"{uri}/remote", n_trials=2, n_freqs=2)
