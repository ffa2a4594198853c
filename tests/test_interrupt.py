"""Interrupting a real sweep: SIGINT and SIGTERM at random points, then --resume.

The tables never hold a row for a trial that did not finish, the exit status says interrupted
(130 for SIGINT, 143 for SIGTERM), the last line says how to continue, and after the resume the
tables hold exactly the uninterrupted run's trials with the same metrics (checked against each
trial run directly, without Ray).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drift_sweeps import results
from drift_sweeps.spaces import load_space
from drift_sweeps.trial import run_trial

REPO = Path(__file__).resolve().parent.parent
SEEDS = list(range(6))
METRICS = ("status", "steps_run", "t_final", "final_worst_rel_error", "final_sample_distance", "final_loss")


def _reference(space_path: Path) -> dict[int, dict]:
    """Each trial's summary, run directly in this process (same seeds: the same numbers as under Ray)."""
    import torch

    torch.set_num_threads(1)  # as the trainable does for a 1-CPU trial
    space = load_space(str(space_path))
    out = {}
    for params in space.grid_points():
        cfg = space.resolve(params)
        out[cfg.seed] = run_trial(cfg)
    return out


def _wait_for_rows(root: Path, n: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(results.trial_ids(str(root))) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early (rc {proc.returncode}): {proc.stdout.read()}")
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} trials written in {timeout} s")


def _check_rows(root: Path, reference: dict[int, dict]) -> int:
    """Every row is a finished trial: its metrics equal the trial's uninterrupted run.  Returns the row count."""
    if not results.trial_ids(str(root)):
        return 0
    trials = results.read_table(str(root), "trials")
    assert trials["trial_id"].is_unique and trials["seed"].is_unique, trials[["trial_id", "seed"]]
    for row in trials.to_dict("records"):
        ref = reference[row["seed"]]
        for key in METRICS:
            want = ref[key]
            # exact for status and steps; floats to 1e-4 (the same seeds, but another process and thread pool)
            same = (row[key] == want if isinstance(want, (str, int)) else
                    row[key] == pytest.approx(want, rel=1e-4, abs=1e-12))
            assert same, (row["seed"], key, row[key], want)
    curves = results.read_table(str(root), "curves") if results.trial_ids(str(root), "curves") else None
    if curves is not None:
        assert set(curves["trial_id"]) <= set(trials["trial_id"])  # no partial curves of unfinished trials
    return len(trials)


def _without_ray_worker_teardown(out: str) -> str:
    """The output less the forwarded lines of workers whose teardown went through Ray's own SIGTERM
    handler: it can raise SystemExit inside a weakref callback while the worker shuts down, and Python
    prints that as 'Exception ignored ... Traceback' (Ray's shutdown, not the sweep's).  Every other
    traceback, the driver's or a trial's, still fails the test."""
    torn = set(re.findall(r"\(\w+ pid=(\d+)\).*sigterm_handler", out))
    return "\n".join(ln for ln in out.splitlines() if not any(f" pid={pid})" in ln for pid in torn))


@pytest.mark.parametrize("rng_seed", [12])
def test_sigint_and_sigterm_then_resume_give_the_uninterrupted_tables(make_space, kill_leftovers, tmp_path,
                                                                    ray_tmp, rng_seed):
    rng = random.Random(rng_seed)
    space = make_space("interrupted", axes={"seed": SEEDS}, max_concurrent=2,
                       base_extra={"steps": 150, "eps": 0.01, "dt": 0.1})
    reference = _reference(space)
    res = tmp_path / "res"
    root = res / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "drift_sweeps.run", str(space), "--results", str(res), "--address", "local",
           "--num-cpus", "2"]

    for i, (sig, status) in enumerate([(signal.SIGINT, 130), (signal.SIGTERM, 143)]):
        temp = os.path.join(ray_tmp, f"r{i}")
        argv = [*cmd, "--temp-dir", temp] + (["--resume"] if i else [])
        before = len(results.trial_ids(str(root)))
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            _wait_for_rows(root, before + rng.randint(1, 2), proc, timeout=180)
            time.sleep(rng.uniform(0.0, 1.5))  # anywhere in the next trials' run, or after the last one
            ended_first = proc.poll() is not None  # the sweep finished and its driver exited before the signal
            if not ended_first:
                proc.send_signal(sig)
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
            kill_leftovers(temp, session=proc.pid)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if ended_first:
            assert proc.returncode == 0 and _check_rows(root, reference) == len(SEEDS), out[-3000:]
            break
        assert proc.returncode == status, out[-3000:]
        ours = _without_ray_worker_teardown(out)
        assert "Traceback" not in ours and "*** SIG" not in ours and "PC: @" not in ours, out[-3000:]
        assert lines[-1].startswith(f"interrupted by {signal.Signals(sig).name}: "), lines[-5:]
        assert lines[-1].endswith("--resume") and "continue with: python -m drift_sweeps.run" in lines[-1]
        assert "writing one from its last result" not in out
        n = _check_rows(root, reference)
        assert before < n < len(SEEDS) or (n == len(SEEDS) and status), (before, n)

    done = subprocess.run([*cmd, "--temp-dir", os.path.join(ray_tmp, "last"), "--resume"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _check_rows(root, reference) == len(SEEDS)
    trials = results.read_table(str(root), "trials")
    assert sorted(trials["seed"]) == SEEDS
    assert sorted(p.stem for p in (root / "configs").glob("*.json")) == sorted(trials["trial_id"])

    # and the same command once more: the finished sweep's table, exit 0, no Ray
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "finished (6 of 6 trials)" in again.stdout and "Ray:" not in again.stdout


@pytest.mark.parametrize("search", ["random", "optuna"])
def test_resume_of_sampled_sweeps_runs_only_the_missing_trials(search, make_space, tmp_path, local_ray, capsys):
    """Random and Optuna sweeps: trials without a row (here: rows deleted, as after a kill) run again as
    new samples; finished rows are kept as they are."""
    from drift_sweeps.run import main

    axes = {"bandwidth": {"loguniform": [0.5, 4.0]}}
    if search == "random":
        axes["kernel"] = ["gaussian", "laplacian"]  # a grid axis crossed with the samples
    space = make_space(f"s_{search}", search=search, num_samples=2 if search == "random" else 4, seed=5,
                       axes=axes, max_concurrent=2)
    res = str(tmp_path / "res")
    assert main([str(space), "--results", res]) == 0, capsys.readouterr().out
    root = f"{res}/s_{search}"
    before = results.read_table(root, "trials").set_index("trial_id")
    assert len(before) == 4
    lost = sorted(before.index)[:2]
    results.remove_trials(root, lambda tid: tid in lost)

    rc = main([str(space), "--results", res, "--resume"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "resuming (2 finished, 2 to run)" in out
    after = results.read_table(root, "trials").set_index("trial_id")
    assert len(after) == 4 and after.index.is_unique
    kept = sorted(set(before.index) - set(lost))
    assert set(kept) <= set(after.index)
    assert after.loc[kept, "bandwidth"].tolist() == before.loc[kept, "bandwidth"].tolist()
    assert after["bandwidth"].between(0.5, 4.0).all()
    if search == "random":
        assert sorted(after["kernel"]) == ["gaussian", "gaussian", "laplacian", "laplacian"]


@pytest.mark.parametrize("signals", [1, 2])
def test_a_signal_as_the_driver_shuts_down_is_reported_after_the_table(make_space, tmp_path, capsys, monkeypatch,
                                                                       signals):
    """SIGTERM after the last trial, while the runner releases Ray: the shutdown finishes (a second signal stops
    it at once), then the driver says it was interrupted and exits 143 (before, the restored default handler
    killed it mid-shutdown)."""
    from drift_sweeps.run import main
    from drift_sweeps.sweep.serial import SerialRunner

    space = make_space("late", axes={"seed": [0, 1]})
    closed: list[bool] = []

    def close(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here: the first signal is only noted
        closed.append(True)
        if signals == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the second raises here, out of close
            closed.append(False)

    monkeypatch.setattr(SerialRunner, "close", close)
    outside: list[int] = []  # this process's handler, around the driver's (the default would end the test run)
    handler = signal.signal(signal.SIGTERM, lambda signum, frame: outside.append(signum))
    try:
        rc = main([str(space), "--serial", "--results", str(tmp_path / "res")])
    finally:
        ours = signal.signal(signal.SIGTERM, handler)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert rc == 143 and closed == [True] and outside == [], (rc, outside, lines[-5:])
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith("interrupted by SIGTERM: 2 of 2 trials finished; continue with: ") and \
        lines[-1].endswith("--resume"), lines[-5:]
    assert any(ln.startswith("| trials |") for ln in lines)  # the sweep's table came first
    assert ours is not None and getattr(ours, "__name__", "") == "<lambda>"  # the driver put ours back
