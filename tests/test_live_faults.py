"""The live views on a failing disk (issue 23): Optuna's SQLite study and the TensorBoard files on a disk that
fills up or is read-only warn once and stop; the study goes on in memory and the sweep is not disturbed.
The tests mount a small tmpfs of their own (root only; skipped otherwise) and unmount it afterwards."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from drift_sweeps.tune import live


def _mount(where: Path, *options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], check=True,
                   capture_output=True, text=True)


def _remount(where: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(("remount",) + options), str(where)], check=True, capture_output=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs at <tmp>/disk, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        _mount(where, "size=4m")
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): {getattr(err, 'stderr', err)}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path) -> None:
    """Write a filler file on `where`'s filesystem until it is full."""
    with open(where / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC, err


@pytest.fixture
def warnings_seen() -> Iterator[list[logging.LogRecord]]:
    """The warnings of the live views' logger (the CLI's logger may not propagate to a root handler)."""
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger(live.__name__)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def _searcher(storage):
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(space={"x": tune.uniform(0.0, 1.0)}, metric="loss", mode="min", storage=storage,
                        study_name="sweep", seed=0)


def _run_trials(searcher, first: int, count: int, after=None) -> None:
    """Tune's calls for `count` trials: suggest, three results, complete; `after(i)` after trial i."""
    for i in range(first, first + count):
        tid = f"t_{i:05d}"
        x = searcher.suggest(tid)["x"]
        for it in (1, 2, 3):
            searcher.on_trial_result(tid, {"loss": x / it, "training_iteration": it})
        searcher.on_trial_complete(tid, {"loss": x / 3, "training_iteration": 3})
        if after is not None:
            after(i)


def _file_trials(path: Path) -> list:
    import optuna

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{path}")
    return study.get_trials(deepcopy=False)


def test_optuna_study_goes_on_in_memory_when_the_disk_fills(disk, warnings_seen, tmp_path):
    from optuna.trial import TrialState

    storage = live.optuna_storage(str(disk / "sweep"))
    searcher = _searcher(storage)
    _run_trials(searcher, 0, 12, after=lambda i: fill(disk) if i == 3 else None)
    study = searcher._ot_study
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 12
    assert len(warnings_seen) == 1, [w.getMessage() for w in warnings_seen]
    msg = warnings_seen[0].getMessage()
    assert "optuna.db" in msg and "writes stopped" in msg and "full" in msg and "goes on in memory" in msg
    assert not storage.mirrored
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's experiment checkpoint pickles the searcher

    # the file stays readable with the trials written before the disk filled; a resumed sweep continues it
    (disk / "filler").unlink()
    in_file = _file_trials(disk / "sweep" / "optuna.db")
    assert 4 <= len(in_file) < 12 and all(t.state == TrialState.COMPLETE for t in in_file[:4])
    resumed = _searcher(live.optuna_storage(str(disk / "sweep")))
    assert len(resumed._ot_study.trials) == len(in_file)
    _run_trials(resumed, 12, 2)
    assert len(_file_trials(disk / "sweep" / "optuna.db")) == len(in_file) + 2 and len(warnings_seen) == 1


def test_optuna_study_on_a_read_only_disk(disk, warnings_seen):
    from optuna.trial import TrialState

    earlier = live.optuna_storage(str(disk / "sweep"))
    _run_trials(_searcher(earlier), 0, 3)  # a study from an earlier run
    earlier.close()  # (a file open for writing keeps the disk from turning read-only)
    os.makedirs(disk / "empty")
    _remount(disk, "ro")
    try:
        searcher = _searcher(live.optuna_storage(str(disk / "sweep")))  # the file opens; writes fail
        _run_trials(searcher, 3, 4)
        assert [t.state for t in searcher._ot_study.trials] == [TrialState.COMPLETE] * 7
        assert len(warnings_seen) == 1 and "readonly" in warnings_seen[0].getMessage().replace("-", "")
        fresh = _searcher(live.optuna_storage(str(disk / "empty")))  # no file can be made at all
        _run_trials(fresh, 0, 2)
        assert len(fresh._ot_study.trials) == 2 and len(warnings_seen) == 2
        assert len(_file_trials(disk / "sweep" / "optuna.db")) == 3
    finally:
        _remount(disk, "rw")


def test_tensorboard_writer_on_a_disk_that_fills_warns_once(disk, warnings_seen):
    w = live.TensorBoardWriter(str(disk / "tensorboard"), ["loss"])
    trials = [SimpleNamespace(trial_id=f"t_{i:05d}", config={"seed": i}) for i in range(6)]
    for i, trial in enumerate(trials):
        if i == 2:
            fill(disk)
        for step in range(0, 200, 5):
            w.on_trial_result(0, [], trial, {"step": step, "loss": 1.0 / (step + 1)})
        w.on_trial_complete(0, [], trial)
    w.on_experiment_end([])
    assert w.failed and len(warnings_seen) == 1
    assert "TensorBoard output stopped" in warnings_seen[0].getMessage()
    assert "No space left" in warnings_seen[0].getMessage()


def test_tensorboard_writer_on_a_read_only_disk_warns_once(disk, warnings_seen):
    _remount(disk, "ro")
    try:
        w = live.TensorBoardWriter(str(disk / "tensorboard"), ["loss"])
        for i in range(3):
            w.on_trial_result(0, [], SimpleNamespace(trial_id=f"t_{i}", config={}), {"step": 0, "loss": 1.0})
        w.on_experiment_end([])
        assert w.failed and len(warnings_seen) == 1 and "Read-only" in warnings_seen[0].getMessage()
    finally:
        _remount(disk, "rw")


@pytest.mark.slow
def test_sweep_resumed_with_its_live_views_on_a_read_only_disk(disk, warnings_seen, make_space, tmp_path,
                                                               local_ray, capsys):
    """An Optuna sweep under Tune whose optuna.db and tensorboard/ sit on a read-only disk (bind mounts): each
    live view warns once, the sweep completes with exit 0, every trial has one row, the study continues."""
    from drift_sweeps import results
    from drift_sweeps.run import main

    space = make_space("tpe", search="optuna", num_samples=4, seed=5, max_concurrent=2,
                       axes={"bandwidth": {"loguniform": [0.5, 4.0]}})
    res = str(tmp_path / "res")
    assert main([str(space), "--results", res]) == 0, capsys.readouterr().out
    sweep = Path(res) / "tpe"
    before = sorted(results.read_table(str(sweep), "trials")["trial_id"])
    results.remove_trials(str(sweep), lambda tid: tid in before[:2])  # as after a kill

    (disk / "tensorboard").mkdir()
    (disk / "optuna.db").write_bytes((sweep / "optuna.db").read_bytes())
    binds = [(disk / "optuna.db", sweep / "optuna.db"), (disk / "tensorboard", sweep / "tensorboard")]
    try:
        for source, target in binds:
            subprocess.run(["mount", "--bind", str(source), str(target)], check=True, capture_output=True)
        _remount(disk, "ro")
        rc = main([str(space), "--results", res, "--resume"])
        out = capsys.readouterr().out
    finally:
        for _, target in binds:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
    assert rc == 0, out
    assert "resuming (2 finished, 2 to run)" in out and "Traceback" not in out
    after = results.read_table(str(sweep), "trials")
    assert len(after) == 4 and after["trial_id"].is_unique and set(before[2:]) <= set(after["trial_id"])
    messages = sorted(w.getMessage() for w in warnings_seen)
    assert len(messages) == 2, messages
    assert "Optuna's study file" in messages[0] and "readonly" in messages[0].replace("-", "")
    assert "TensorBoard output stopped" in messages[1] and "Read-only" in messages[1]
