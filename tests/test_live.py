"""The live view of a sweep: TensorBoard files, the Optuna study in SQLite read by optuna-dashboard while
the sweep runs, progress lines, and Tune's own ResultGrid of a finished sweep."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from drift_sweeps.tune import live

ROOT = Path(__file__).resolve().parents[1]


def _scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_writer_writes_each_report_as_it_comes(tmp_path):
    w = live.TensorBoardWriter(str(tmp_path), ["loss", "worst_rel_error", "time_to_eps"])
    trial = SimpleNamespace(trial_id="abc_00001", config={"kernel": "gaussian", "seed": 0})
    for step, err in ((0, 1.0), (5, 0.5), (10, float("nan"))):
        w.on_trial_result(0, [], trial, {"step": step, "loss": 0.1 * (step + 1), "worst_rel_error": err,
                                         "time_to_eps": 40.0, "node": "x"})
    # on disk within FLUSH_S seconds of the report, before the trial ends
    deadline = time.monotonic() + 10 * live.FLUSH_S
    while True:
        seen = _scalars(str(tmp_path / "abc_00001"))
        if len(seen.get("loss", [])) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert seen["worst_rel_error"] == [(0, 1.0), (5, 0.5)]  # non-finite values are left out
    assert [s for s, _ in seen["loss"]] == [0, 5, 10] and "node" not in seen
    w.on_trial_complete(0, [], trial)
    assert not w._writers


def test_live_lines_and_storage_urls(tmp_path):
    root = str(tmp_path / "sweep")
    assert live.optuna_storage_url(root) == f"sqlite:///{root}/optuna.db"
    assert live.optuna_storage_url("s3://bucket/sweeps/x") is None and live.tensorboard_dir("s3://b/x") is None
    lines = live.live_lines(root, "http://127.0.0.1:8265", live.optuna_storage_url(root))
    assert lines == ["live: Ray dashboard http://127.0.0.1:8265", f"live: tensorboard --logdir {root}/tensorboard",
                     f"live: optuna-dashboard sqlite:///{root}/optuna.db"]
    assert live.live_lines("s3://b/x", None, None) == []


def _open_at(sweep_root: str, start: float, reader: bool, out) -> None:
    """One process opening the sweep's study file at `start`: the sweep's storage, or (reader) a dashboard's
    plain RDBStorage opened the moment the file appears."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    time.sleep(max(0.0, start - time.time()))
    try:
        if reader:
            path, deadline = os.path.join(sweep_root, live.OPTUNA_DB), time.time() + 30
            while not os.path.exists(path):
                if time.time() > deadline:
                    raise TimeoutError("no study file after 30 s")
                time.sleep(0.001)
            optuna.storages.RDBStorage(f"sqlite:///{path}").get_all_studies()
            out.put("ok")
        else:
            out.put("ok" if live.optuna_storage(sweep_root).mirrored else "stopped")
    except Exception as err:  # noqa: BLE001 - reported to the test
        out.put(f"{type(err).__name__}: {str(err)[:120]}")


def test_optuna_study_file_opened_by_several_processes_at_once(tmp_path):
    """A sweep's storage and optuna-dashboard opening a new optuna.db at the same moment: each used to make
    Optuna's schema and one failed ('table ... already exists', 'UNIQUE constraint failed:
    alembic_version'); now the schema appears complete and every opener gets the file."""
    import multiprocessing

    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/warm.db")  # imports done once, not in each fork
    ctx = multiprocessing.get_context("fork")
    for round_ in range(4):
        root = str(tmp_path / f"sweep{round_}")
        out, start = ctx.Queue(), time.time() + 0.5
        procs = [ctx.Process(target=_open_at, args=(root, start, reader, out)) for reader in (0, 0, 0, 1, 1)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
        assert [out.get(timeout=5) for _ in procs] == ["ok"] * len(procs), round_
        assert os.listdir(root) == [live.OPTUNA_DB]  # no schema file of its own left behind


def _wsgi_get(app, path: str) -> dict:
    status = {}

    def start_response(s, headers, exc_info=None):
        status["s"] = s

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
           "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO()}
    body = b"".join(app(env, start_response))
    assert status["s"].startswith("200"), (path, status, body[:500])
    return json.loads(body)


@pytest.mark.slow
def test_optuna_dashboard_reads_a_running_sweep_then_tunes_view(tmp_path):
    """tune_annealing --smoke in a subprocess; while it runs, optuna-dashboard's WSGI app lists its study and
    trials and TensorBoard files exist; after it, Tune's ResultGrid marks the time_to_eps stand-ins."""
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    results = tmp_path / "results"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_tmp = tempfile.mkdtemp(prefix="rl", dir="/tmp")  # Ray's socket paths must stay short
    cmd = [sys.executable, "-m", "drift_sweeps.run", "tune_annealing", "--smoke", "--num-samples", "3",
           "--results", str(results), "--name", "ta", "--num-cpus", "2", "--temp-dir", ray_tmp]
    log = open(tmp_path / "sweep.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    sweep = results / "ta"
    url = f"sqlite:///{sweep}/optuna.db"
    seen_running = None
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and proc.poll() is None:
            if (sweep / "optuna.db").exists():
                app = optuna_dashboard.wsgi(url)
                studies = _wsgi_get(app, "/api/studies")["study_summaries"]
                if studies:
                    study = _wsgi_get(app, f"/api/studies/{studies[0]['study_id']}")
                    if study["trials"]:
                        seen_running = (studies[0]["study_name"], study["trials"])
                        break
            time.sleep(2)
        assert seen_running is not None, (tmp_path / "sweep.log").read_text()[-3000:]
        assert proc.poll() is None, "the sweep should still be running while the dashboard reads it"
        name, trials = seen_running
        assert name == "ta"
        assert {"bandwidth", "rate"} <= {p["name"] for t in trials for p in t["params"]}
        assert proc.wait(timeout=420) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    out = (tmp_path / "sweep.log").read_text()
    assert f"live: optuna-dashboard {url}" in out and f"live: tensorboard --logdir {sweep}/tensorboard" in out
    import optuna

    study = optuna.load_study(study_name="ta", storage=url)
    assert len(study.trials) == 3  # the finished sweep's study stays readable
    runs = sorted(os.listdir(sweep / "tensorboard"))
    assert len(runs) == 3 and "worst_rel_error" in _scalars(str(sweep / "tensorboard" / runs[0]))

    from ray.tune import ExperimentAnalysis, ResultGrid  # the documented way (docs/live.md), for a trusted folder

    grid = ResultGrid(ExperimentAnalysis(str(sweep / "tune"), default_metric="time_to_eps", default_mode="min"))
    df = grid.get_dataframe()
    assert len(df) == 3 and {"time_to_eps", "time_to_eps_estimated"} <= set(df.columns)
    est = df[df["time_to_eps_estimated"]]
    real = df[~df["time_to_eps_estimated"].astype(bool)]
    assert (real["worst_rel_error"] <= 0.1 + 1e-12).all()  # a real time is a converged trial's
    assert len(est) + len(real) == 3
