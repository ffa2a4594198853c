"""The sweep folder (`drift_sweeps.sweep.folder.SweepFolder`) and the one trial identity of both runners:
a sweep started with --serial and interrupted continues under Tune, and the reverse, running only the
grid points without a row."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from drift_sweeps import results
from drift_sweeps.spaces import VARIANT_PARAM
from drift_sweeps.spaces import load_space
from drift_sweeps.spine import record
from drift_sweeps.sweep.folder import SPEC_FILE, SweepFolder
from drift_sweeps.sweep.identity import grid_key, missing_points
from drift_sweeps.sweep.lock import LOCK_NAME
from drift_sweeps.sweep.serial import pending

REPO = Path(__file__).resolve().parent.parent
SLOW_BASE = {"steps": 450, "eps": 0.01, "dt": 0.1}  # ~1.2 s per trial (at 150 steps 0.4 s: under load all four
# finished before the SIGINT once): an interrupt lands mid-sweep


def _row(space, tid: str, params: dict) -> dict:
    """A finished trial's row for the grid point `params` (no trial run: a made-up summary)."""
    cfg = space.resolve(params).to_dict()
    summary = record.summary(record.CENSORED, {"step": 5, "t": 0.5, "loss": 1.0, "worst_rel_error": 0.3},
                             convergence_time=None, n_samples=cfg["n_samples"], wall_time_s=1.0, device_used="cpu")
    return results.trial_row(sweep=space.name, trial_id=tid, config=cfg, summary=summary, node="n",
                             swept_axes=space.swept_keys(), variant=params.get(VARIANT_PARAM))


def test_two_variants_that_set_the_same_values_are_two_grid_points(make_space):
    space = load_space(str(make_space("twin", axes={"seed": [0]}, variants=[
        {"name": "a", "bandwidth": 0.5}, {"name": "b", "bandwidth": 0.5}, {"name": "c", "bandwidth": 1.0}])))
    points = list(space.grid_points())
    assert len(points) == 3
    kept = {"t0": _row(space, "t0", points[0])}
    assert [p[VARIANT_PARAM] for _, p in missing_points(space, kept)] == ["b", "c"]


def test_the_folder_owns_its_layout_and_ignores_its_lock(tmp_path, make_space):
    space = load_space(str(make_space("lay", axes={"seed": [0, 1, 2]})))
    folder = SweepFolder.under(str(tmp_path / "res"), "lay")
    assert folder.root == f"{tmp_path}/res/lay" and not folder.exists()
    Path(folder.root).mkdir(parents=True)
    (Path(folder.root) / LOCK_NAME).write_text("{}")
    assert not folder.exists() and not folder.only_temporaries()  # a lock alone is no sweep
    (Path(folder.root) / ".tmp-sweep.json-x").write_text("{")
    assert folder.exists() and folder.only_temporaries()
    folder.start_over()
    assert sorted(os.listdir(folder.root)) == [LOCK_NAME]  # everything but the lock

    assert folder.prepare(resume=False, overwrite=False, spec={"space": space.to_dict()}) == {}
    assert folder.read_spec()["space"]["name"] == "lay" and folder.recorded_space(folder.read_spec()) == space
    points = list(space.grid_points())
    for i, params in enumerate(points):
        folder.write_config(f"t{i}", params, space.resolve(params).to_dict())
    for i in (0, 2):
        folder.record_trial(f"t{i}", _row(space, f"t{i}", points[i]), [])
    (Path(folder.root) / "trials" / ".tmp-t1-abc.parquet").write_bytes(b"half")
    rows, bad = folder.finished_rows()
    assert sorted(rows) == ["t0", "t2"] and not bad and folder.finished_count() == 2
    # a resume keeps the finished trials and removes the rest: t1's config and the temporary
    kept = folder.prepare(resume=True, overwrite=False, spec={})
    assert sorted(kept) == ["t0", "t2"]
    assert sorted(p.name for p in (Path(folder.root) / "configs").iterdir()) == ["t0.json", "t2.json"]
    assert not list((Path(folder.root) / "trials").glob(".tmp-*"))
    assert folder.recorded() and (Path(folder.root) / SPEC_FILE).is_file()


def test_one_trial_identity_whatever_the_trial_ids(make_space):
    space = load_space(str(make_space("ids", axes={"kernel": ["gaussian", "laplacian"], "seed": [0, 1]},
                                      num_samples=2)))
    points = list(space.grid_points())  # 4 points x 2 repeats
    kept = {"tune_a_00000": _row(space, "tune_a_00000", points[0]),  # a Tune trial of point 0
            "serial_00002": _row(space, "serial_00002", points[1]),  # a serial trial of point 1
            "tune_b_00001": _row(space, "tune_b_00001", points[3]),
            "tune_b_00002": _row(space, "tune_b_00002", points[3])}  # point 3: both repeats
    assert grid_key(space, json.loads(kept["serial_00002"]["config_json"])) == grid_key(
        space, space.resolve(points[1]).to_dict())
    assert [i for i, _ in missing_points(space, kept)] == [0, 1, 2, 2]
    todo = pending(space, kept)
    # serial ids are grid positions (point * num_samples + repeat); a held id is skipped
    assert [tid for tid, _ in todo] == ["serial_00000", "serial_00003", "serial_00004", "serial_00005"]
    assert [p for _, p in todo] == [points[0], points[1], points[2], points[2]]
    assert missing_points(space, {}) == [(i, p) for i, p in enumerate(points) for _ in range(2)]
    # a config key that a later version adds (or whose default it changes) leaves the identity as is
    upgraded = {tid: {**row, "config_json": json.dumps({**json.loads(row["config_json"]), "added_later": 1,
                                                       "n_eval": 4096})} for tid, row in kept.items()}
    assert missing_points(space, upgraded) == missing_points(space, kept)


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "drift_sweeps.run", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _interrupt_after_rows(proc: subprocess.Popen, root: Path, n: int, timeout: float = 240) -> str:
    """SIGINT once `n` trials rows are written; -> the driver's output (it must exit 130)."""
    deadline = time.monotonic() + timeout
    while len(results.trial_ids(str(root))) < n:
        assert proc.poll() is None, f"ended early (rc {proc.returncode}): {proc.stdout.read()}"
        assert time.monotonic() < deadline, f"fewer than {n} rows in {timeout} s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted by SIGINT" in out and out.rstrip().endswith("--resume"), out[-2000:]
    return out


def _rows(root: Path) -> dict[str, int]:
    trials = results.read_table(str(root), "trials")
    assert trials["trial_id"].is_unique
    return dict(zip(trials["trial_id"], trials["seed"]))


def test_serial_interrupted_then_continued_under_tune_runs_only_the_missing_points(
        make_space, tmp_path, ray_tmp, kill_leftovers, capsys):
    from drift_sweeps.run import main

    space = make_space("ser2tune", axes={"seed": [0, 1, 2, 3]}, base_extra=SLOW_BASE)
    res, root = tmp_path / "res", tmp_path / "res" / "ser2tune"
    proc = _start([str(space), "--serial", "--results", str(res)])
    try:
        _interrupt_after_rows(proc, root, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _rows(root)
    assert 1 <= len(before) < 4 and all(t.startswith("serial_") for t in before), before
    assert not (root / LOCK_NAME).exists()  # released on the way out

    rc = main([str(space), "--results", str(res), "--address", "local", "--num-cpus", "2", "--temp-dir", ray_tmp])
    out = capsys.readouterr().out
    kill_leftovers(ray_tmp)
    assert rc == 0, out[-3000:]
    assert f"resuming ({len(before)} finished, {4 - len(before)} to run)" in out, out[-3000:]
    after = _rows(root)
    assert sorted(after.values()) == [0, 1, 2, 3]  # every grid point once
    assert {t: s for t, s in after.items() if t in before} == before  # the serial rows are kept as they were
    assert not [t for t in after if t not in before and t.startswith("serial_")]  # the rest ran under Tune


def test_tune_interrupted_then_continued_serially_runs_only_the_missing_points(
        make_space, tmp_path, ray_tmp, kill_leftovers):
    space = make_space("tune2ser", axes={"seed": [0, 1, 2, 3]}, max_concurrent=1, base_extra=SLOW_BASE)
    res, root = tmp_path / "res", tmp_path / "res" / "tune2ser"
    proc = _start([str(space), "--results", str(res), "--address", "local", "--num-cpus", "2",
                   "--temp-dir", os.path.join(ray_tmp, "t")])
    try:
        _interrupt_after_rows(proc, root, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_leftovers(os.path.join(ray_tmp, "t"), session=proc.pid)
    before = _rows(root)
    assert 1 <= len(before) < 4 and not any(t.startswith("serial_") for t in before), before

    done = subprocess.run([sys.executable, "-m", "drift_sweeps.run", str(space), "--serial", "--results", str(res)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "continuing it" in done.stdout
    ran = [ln for ln in done.stdout.splitlines() if re.match(r"\[\d+/4\] serial_", ln)]
    assert len(ran) == 4 - len(before), done.stdout
    after = _rows(root)
    assert sorted(after.values()) == [0, 1, 2, 3]
    assert {t: s for t, s in after.items() if t in before} == before
    assert sorted(p.stem for p in (root / "configs").glob("*.json")) == sorted(after)

    again = subprocess.run([sys.executable, "-m", "drift_sweeps.run", str(space), "--serial", "--results", str(res)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "finished (4 of 4 trials)" in again.stdout, again.stdout
