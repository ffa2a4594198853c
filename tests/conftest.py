"""Shared fixtures: tiny search spaces, short temp folders for Ray, a local S3 endpoint, process cleanup."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml


# The suite runs on two pytest-xdist workers (pyproject `addopts`): it waits far more than it computes
# (Ray's start, subprocess drivers, polling; a serial run used 20 min of CPU in 30 min of wall time on
# 2 cores).  Each file's tests stay on one worker (their module fixtures are built once), and the two
# network-namespace cluster tests share a group, so they never run at the same time.
SERIAL_GROUPS = {"test_cluster_e2e.py": "netns-cluster", "test_cluster_chaos.py": "netns-cluster"}

# Two workers share two cores, and the other worker often runs a Ray cluster: each worker computes on
# one thread, and idle OpenMP threads sleep instead of spinning (set before torch is imported).  Under
# a load of ~10 the 2-D Cauchy spectral test took 42 s with the defaults, 24 s on one thread, 19 s
# with passive waiting (5 s on an idle machine).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(SERIAL_GROUPS.get(name, str(item.path.relative_to(config.rootpath)))))

# Ray reads these when it starts; set them explicitly so every node of every test agrees
# (a token left in the home folder by an earlier ray.init() otherwise splits auth modes).
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# as an embedded sweep's Ray (tune/session.py): no idle worker per CPU at the start, which the trials' actors
# never use; every Ray a test starts (ray.init here, `ray start` on the test clusters) saves that CPU
os.environ["RAY_prestart_worker_first_driver"] = "0"

# A trial small enough for a test: ~20 steps of 128 particles, a report every 5 steps.
TINY_BASE = {
    "target": "torus1d", "k_max": 2, "n_samples": 128, "n_data": 128, "n_eval": 128,
    "dt": 0.2, "steps": 20, "eval_every": 5, "bandwidth": 1.0,
}


def _write_space(folder: Path, name: str, **fields) -> Path:
    doc = {"name": name, "description": f"test space {name}", "search": "grid", "base": dict(TINY_BASE)}
    base_extra = fields.pop("base_extra", {})
    doc.update(fields)
    doc["base"] = {**doc["base"], **base_extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def make_space(tmp_path: Path) -> Callable[..., Path]:
    """make_space(name, base_extra={...}, **top_level_keys) writes `<tmp>/spaces/<name>.yaml`, base = TINY_BASE.

    (A fixture, not an importable helper: tests/analysis has a conftest module of its own.)
    """
    folder = tmp_path / "spaces"
    folder.mkdir(exist_ok=True)
    return lambda name, **fields: _write_space(folder, name, **fields)


@pytest.fixture
def tiny_base() -> dict:
    """The base config of the test spaces."""
    return dict(TINY_BASE)


@pytest.fixture
def ray_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A short temp folder for Ray's sockets and logs (unix socket paths must stay < 108 chars).

    RAY_TMPDIR points there too, so Ray's "current cluster" address file (which `Cluster` writes to
    the default temp folder whatever its temp_dir) never leaks to other Ray users of this machine.
    """
    d = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    os.makedirs(os.path.join(d, "ray"))
    monkeypatch.setenv("RAY_TMPDIR", d)
    yield d
    kill_processes_mentioning(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def local_ray(ray_tmp: str) -> Iterator[None]:
    """A tiny embedded Ray (2 CPUs, small object store, temp folder of its own), shut down afterwards."""
    import ray

    ray.init(num_cpus=2, _temp_dir=ray_tmp, include_dashboard=False, object_store_memory=150 * 2**20,
             logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with bucket `drift`; AWS_* variables point boto3 and pyarrow at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="drift")
    try:
        yield endpoint
    finally:
        server.stop()


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry))
    return pids


@pytest.fixture
def kill_leftovers() -> Callable[..., list[int]]:
    """kill_leftovers(text, session=None): SIGKILL by pid what a killed driver left behind."""
    return kill_processes_mentioning


def kill_processes_mentioning(text: str, session: int | None = None) -> list[int]:
    """SIGKILL, one pid at a time, the processes whose command line contains `text` (a unique temp
    folder) or that belong to process session `session`; returns the pids killed."""
    pids = set(_pids_mentioning(text))
    if session is not None:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if os.getsid(int(entry)) == session:
                        pids.add(int(entry))
                except OSError:
                    continue
    for pid in sorted(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and _alive(p) for p in pids):
        time.sleep(0.1)
    return sorted(pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
