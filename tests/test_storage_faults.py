"""Storage faults (issue 23): a full disk or a read-only sweep folder stops the sweep with exit 74 and one
line, within 30 s of the failed write, without a traceback; `--resume` once the cause is fixed completes it
with every trial exactly once.  The tests mount a small tmpfs of their own (root only; skipped otherwise)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
GRID = {"bandwidth": [0.5, 1.0, 2.0, 4.0], "dt": [0.1, 0.2, 0.3, 0.4]}  # 16 tiny trials


def _mount(where: Path, *options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)], check=True,
                   capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KiB tmpfs at <tmp>/disk, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        _mount(where, "size=600k")
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): {getattr(err, 'stderr', err)}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _remount(where: Path, *options: str, tries: int = 100) -> None:
    """Remount with `options`; a read-only remount fails with "busy" while a file there is open for writing
    (the sweep between two writes), so it is tried again every 0.05 s."""
    command = ["mount", "-o", ",".join(("remount",) + options), str(where)]
    for _ in range(tries):
        done = subprocess.run(command, capture_output=True)
        if done.returncode == 0 or b"busy" not in done.stderr:
            break
        time.sleep(0.05)
    done.check_returncode()


def _run(*args: str, timeout: float = 300, on_first_line=None,
         env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds from the last progress line to the exit)."""
    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "drift_sweeps.run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, last = [], time.monotonic()
    deadline = last + timeout
    for line in proc.stdout:  # type: ignore[union-attr]
        out.append(line)
        if line.startswith("["):
            if on_first_line is not None:
                on_first_line()
                on_first_line = None
            last = time.monotonic()
        assert time.monotonic() < deadline, "the sweep hangs"
    err = proc.stderr.read()  # type: ignore[union-attr]
    code = proc.wait(timeout=60)
    return code, "".join(out), err, time.monotonic() - last


def _rows(sweep: Path) -> list[str]:
    return pq.read_table(sweep / "trials", columns=["trial_id"]).column("trial_id").to_pylist()


def _check_stopped(code: int, out: str, err: str, after_s: float, cause: str, folder: Path) -> None:
    assert code == 74, out + err
    assert "Traceback" not in out + err and "Exception in thread" not in out + err
    errors = [ln for ln in (out + err).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(folder) in errors[0] and cause in errors[0], out + err
    assert "trials recorded" in errors[0] and "--resume" in errors[0]
    lines = (out + err).splitlines()
    after = [ln for ln in lines[max(i for i, ln in enumerate(lines) if ln.startswith("[")) + 1:] if ln.strip()
             and "could not renew the sweep folder's lock" not in ln  # the lock's own notice (lock.py)
             and "TensorBoard output stopped" not in ln  # the live view's one warning: can come late when busy
             and not ln.startswith("... [")]  # a periodic progress line (every 30 s on a slow machine)
    assert after == errors, after  # the one line, nothing else after the last finished trial
    assert after_s < 30, f"exit {after_s:.1f} s after the last progress line"


def _check_resumed(sweep: Path, *args: str) -> None:
    code, out, err, _ = _run(*args, "--resume")
    assert code == 0, out + err
    ids = _rows(sweep)
    assert len(ids) == 16 and len(set(ids)) == 16, ids


def test_full_disk_serial_stops_with_74_and_resumes(make_space, small_disk):
    space = make_space("fill", axes=GRID)
    code, out, err, after_s = _run(str(space), "--serial", "--results", str(small_disk))
    _check_stopped(code, out, err, after_s, "No space left on device (ENOSPC)", small_disk / "fill")
    recorded = int(err.split(" of 16 trials recorded")[0].rsplit(" ", 1)[1])
    assert 0 < recorded < 16 and len(set(_rows(small_disk / "fill"))) == recorded
    assert out.count(": converged") + out.count(": censored") == recorded  # nothing reported that is not written
    _remount(small_disk, "size=20m")
    _check_resumed(small_disk / "fill", str(space), "--serial", "--results", str(small_disk))


def test_read_only_folder_serial_stops_with_74_and_resumes(make_space, small_disk):
    _remount(small_disk, "size=20m")
    space = make_space("ro", axes=GRID)
    code, out, err, after_s = _run(str(space), "--serial", "--results", str(small_disk),
                                   on_first_line=lambda: _remount(small_disk, "ro"))
    _check_stopped(code, out, err, after_s, "Read-only file system (EROFS)", small_disk / "ro")
    _remount(small_disk, "rw")
    _check_resumed(small_disk / "ro", str(space), "--serial", "--results", str(small_disk))


def test_full_disk_tune_stops_with_74_and_resumes(make_space, small_disk, ray_tmp):
    space = make_space("fill", axes=GRID)
    args = (str(space), "--results", str(small_disk), "--num-cpus", "2", "--temp-dir", ray_tmp, "--address", "local")
    code, out, err, after_s = _run(*args)
    _check_stopped(code, out, err, after_s, "No space left on device (ENOSPC)", small_disk / "fill")
    _remount(small_disk, "size=20m")
    _check_resumed(small_disk / "fill", *args)


def test_tensorboard_failure_warns_once_and_stops(tmp_path):
    from drift_sweeps.tune import live

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    w = live.TensorBoardWriter(str(blocker), ["loss"])
    trial = SimpleNamespace(trial_id="t_00001", config={})
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger(live.__name__)  # the CLI's logger may not propagate to a root handler
    logger.addHandler(handler)
    try:
        for step in range(3):
            w.on_trial_result(0, [], trial, {"step": step, "loss": 1.0})
        w.on_trial_complete(0, [], trial)
        w.on_experiment_end([])
    finally:
        logger.removeHandler(handler)
    assert w.failed and len(seen) == 1 and "TensorBoard output stopped" in seen[0].getMessage()


def test_s3_endpoint_lost_mid_sweep_serial_stops_with_74(make_space, s3_endpoint):
    from moto.server import ThreadedMotoServer

    servers = [o for o in __import__("gc").get_objects() if isinstance(o, ThreadedMotoServer)]
    space = make_space("lost", axes=GRID)
    started = time.monotonic()
    code, out, err, after_s = _run(str(space), "--serial", "--results", "s3://drift/sweeps",
                                   on_first_line=lambda: [s.stop() for s in servers])
    assert code == 74, out + err
    assert "Traceback" not in out + err and after_s < 30, (after_s, out + err)
    errors = [ln for ln in (out + err).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "s3://drift/sweeps/lost" in errors[0] and "--resume" in errors[0], errors
    assert time.monotonic() - started < 120
    print(f"\n{after_s:.1f} s after the last finished trial: {errors[0]}")
    port = int(s3_endpoint.rsplit(":", 1)[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # moto keeps its buckets
    server.start()
    try:
        code, out, err, _ = _run(str(space), "--serial", "--results", "s3://drift/sweeps", "--resume")
        assert code == 0, out + err
        ids = pq.read_table("s3://drift/sweeps/lost/trials", columns=["trial_id"]).column("trial_id").to_pylist()
        assert len(ids) == 16 and len(set(ids)) == 16, ids
    finally:
        server.stop()


def test_ray_storage_errors_are_logged_in_one_line() -> None:
    """A storage fault can reach Ray's own writes of Tune's state before the sweep's (a trial's folder created as
    the endpoint goes): what Ray logs there with logger.exception keeps its message and the error's first line,
    not a traceback, so the sweep's output stays one line per error (installed once however often asked)."""
    from drift_sweeps.sweep.folder import storage_cause
    from drift_sweeps.tune import ray_compat

    ray_compat.one_line_storage_errors(storage_cause)
    ray_compat.one_line_storage_errors(storage_cause)
    logger = logging.getLogger(ray_compat.RAY_STORAGE_LOGGERS[0])
    assert sum(isinstance(f, ray_compat._OneLineErrors) for f in logger.filters) == 1
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        try:
            raise OSError("When testing for existence of bucket 'b': NETWORK_CONNECTION\nDetails: refused")
        except OSError:
            logger.exception("Caught exception when creating directory at %s", "b/sweeps/x")
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 1 and seen[0].exc_info is None
    assert logging.Formatter().format(seen[0]) == ("Caught exception when creating directory at b/sweeps/x (OSError: "
                                                   "When testing for existence of bucket 'b': NETWORK_CONNECTION "
                                                   "Details: refused)")
