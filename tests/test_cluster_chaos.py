"""Chaos on a local three-node Ray cluster (issue 23): a 100-trial sweep while raylets and trial processes die.

The nodes are network namespaces (tests/netns_cluster.py: a head and two workers behind a router), each
running `ray start` itself (no launcher: the launcher is tested in test_cluster_e2e.py).  The driver runs
on the head, which takes no trials; each worker runs one trial at a time.  While the sweep runs, every few
seconds (a bounded number of times) either a random worker's raylet is SIGKILLed (that node then dies
and is started again, as a machine that reboots) or a random running trial process is.  Then: every trial
has exactly one row, none is lost, no `--resume` is needed (one runs what is missing, if anything, before
the test fails), and the statuses are those of the same trials run directly without Ray.  The figures are printed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
import yaml

from drift_sweeps.results import read_table
from drift_sweeps.spaces import load_space
from drift_sweeps.trial import run_trial
from netns_cluster import NamespaceCluster, missing_requirements, sh

REPO = Path(__file__).resolve().parent.parent
BIN = os.path.dirname(sys.executable)
SEEDS, EPS = 50, (0.3, 0.5)  # 100 trials: at eps 0.3 each is censored, at 0.5 it converges
TRIALS = SEEDS * len(EPS)
# bounded chaos: at most KILLS_MAX kills, one every KILL_EVERY_S (an idle machine ends the sweep in ~20 s), in the
# first CHAOS_S
KILLS_MAX, KILL_EVERY_S, CHAOS_S = 6, 2.0, 40.0
# retries per trial: one kill can fail a trial more than once (a retry placed on a node whose death Ray has not yet
# noticed fails at once), so the bound is generous; a trial that still errors shows its message below
MAX_FAILURES = 50
# a trial small enough that 100 of them take well under a minute on two busy cores
BASE = {"target": "torus1d", "k_max": 2, "n_samples": 128, "n_data": 128, "n_eval": 128, "dt": 0.2, "steps": 10,
        "eval_every": 5, "bandwidth": 1.0, "samples_kept": 0}

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Iterator[NamespaceCluster]:
    reason = missing_requirements()
    if reason:
        pytest.skip(f"needs network namespaces: {reason}")
    root = Path(tempfile.mkdtemp(prefix="dsch-", dir="/tmp"))  # short: Ray's socket paths live below
    c = NamespaceCluster(root)

    def terminated(signum, frame):  # a CI timeout's SIGTERM still removes everything below
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        taken = sh("ip", "-o", "addr").stdout + sh("ip", "-o", "route").stdout
        if c.subnet.rsplit(".", 1)[0] + "." in taken or c.host_ip.rsplit(".", 1)[0] + "." in taken:
            pytest.skip(f"{c.subnet} is already in use on this host")
        c._network()  # the namespaces and their router; no sshd: Ray is started in each namespace directly
        yield c
    finally:
        left = c.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left behind: {left}"


def _env(c: NamespaceCluster, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(c.root / name / "tmp"),
               PYTHONPATH=str(REPO), PATH=BIN + os.pathsep + env.get("PATH", ""), CUDA_VISIBLE_DEVICES="",
               # a dead node is noticed in ~3 s instead of Ray's default ~15 s (the GCS's health checks)
               RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
               RAY_health_check_failure_threshold="3")
    return env


def _in(c: NamespaceCluster, name: str, *argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", c.ns(name), *argv], env=_env(c, name), cwd=REPO, **kwargs)


def _ray_start(c: NamespaceCluster, name: str) -> None:
    """`ray start` on a node (the head with no CPUs: the driver only); returns when it has started."""
    (c.root / name / "tmp").mkdir(parents=True, exist_ok=True)
    caps = ["--object-store-memory=100000000", "--memory=500000000", f"--temp-dir={c.root / name / 'tmp' / 'ray'}",
            "--disable-usage-stats"]
    if name == "head":
        argv = ["ray", "start", "--head", f"--node-ip-address={c.ips['head']}", "--port=6379", "--num-cpus=0",
                "--include-dashboard=false", *caps]
    else:
        argv = ["ray", "start", f"--address={c.ips['head']}:6379", f"--node-ip-address={c.ips[name]}",
                "--num-cpus=1", *caps]
    proc = _in(c, name, *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"ray start on {name}: {out[-3000:]}"


def _kill_node(c: NamespaceCluster, name: str) -> None:
    """Everything of a node (its raylet already killed): as a machine that went down."""
    for pid in c.pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while c.pids(name) and time.monotonic() < deadline:
        time.sleep(0.1)


def _trial_processes(c: NamespaceCluster, name: str) -> list[int]:
    """A worker's Ray processes that run a trial now (Ray names a busy worker `ray::<task or actor>`)."""
    busy = []
    for pid in c.pids(name):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") and "IDLE" not in cmd and ("drift_trial" in cmd or "train" in cmd.lower()
                                                                or "ImplicitFunc" in cmd):
            busy.append(pid)
    return busy


def _rows(root: Path) -> int:
    folder = root / "trials"
    return len([p for p in folder.glob("*.parquet") if not p.name.startswith(".")]) if folder.exists() else 0


def test_chaos_on_a_three_node_cluster(cluster: NamespaceCluster, capsys) -> None:
    c = cluster
    t0 = time.monotonic()
    space_path = c.root / "chaos.yaml"
    space_path.write_text(yaml.safe_dump({
        "name": "chaos", "description": "chaos test: 100 tiny trials", "search": "grid", "base": BASE,
        "axes": {"seed": list(range(SEEDS)), "eps": list(EPS)}, "max_failures": MAX_FAILURES, "resources": {"cpu": 1, "gpu": 0},
    }, sort_keys=False))
    results = c.root / "shared" / "results"  # one file system: what every node sees, as an NFS mount
    results.mkdir(parents=True)
    sweep = results / "chaos"
    figures: dict[str, object] = {}

    # the fault-free statuses: the same trials run directly, without Ray
    space = load_space(str(space_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a 1-CPU trial under Ray
    try:
        expected = {(p["seed"], p["eps"]): run_trial(space.resolve(p))["status"] for p in space.grid_points()}
    finally:
        torch.set_num_threads(threads)
    figures["reference_s"] = round(time.monotonic() - t0, 1)

    for name in c.names:
        _ray_start(c, name)
    figures["cluster_up_s"] = round(time.monotonic() - t0, 1)
    command = [sys.executable, "-m", "drift_sweeps.run", str(space_path), "--results", str(results),
               "--address", f"{c.ips['head']}:6379"]
    log = open(c.root / "driver.log", "w")
    driver = _in(c, "head", *command, stdout=log, stderr=subprocess.STDOUT, text=True)
    rng = random.Random(23)
    kills: list[dict[str, object]] = []
    restarts: list[threading.Thread] = []
    down: set[str] = set()  # nodes being restarted

    reboot_errors: list[str] = []

    def reboot(name: str) -> None:
        try:
            time.sleep(1.0)
            _kill_node(c, name)
            _ray_start(c, name)  # the machine comes back
        except (AssertionError, OSError, subprocess.SubprocessError) as err:
            reboot_errors.append(f"{name}: {err}")
        down.discard(name)
    try:
        started = time.monotonic()
        while _rows(sweep) < 3 and driver.poll() is None and time.monotonic() - started < 60:
            time.sleep(0.1)
        chaos_start = time.monotonic()
        next_kill = chaos_start + KILL_EVERY_S / 2
        while driver.poll() is None and time.monotonic() - started < 240:
            now = time.monotonic()
            if len(kills) < KILLS_MAX and now - chaos_start < CHAOS_S and now >= next_kill:
                up = [n for n in c.names[1:] if n not in down]
                name = rng.choice(up or c.names[1:])
                if len(kills) % 2 and not down:  # raylets and trial processes in turn; one node down at most
                    raylets = c.find(name, "/raylet")
                    if raylets:
                        os.kill(raylets[0], signal.SIGKILL)
                        kills.append({"what": "raylet", "node": name, "t": round(now - chaos_start, 1),
                                      "rows": _rows(sweep)})
                        down.add(name)
                        restarts.append(threading.Thread(target=reboot, args=(name,), daemon=True))
                        restarts[-1].start()
                else:
                    busy = [p for n in up for p in _trial_processes(c, n)]
                    if busy:
                        os.kill(rng.choice(busy), signal.SIGKILL)
                        kills.append({"what": "trial process", "node": name, "t": round(now - chaos_start, 1),
                                      "rows": _rows(sweep)})
                next_kill = time.monotonic() + KILL_EVERY_S
            time.sleep(0.05)
        driver.wait(timeout=60)
        for t in restarts:
            t.join(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        log.close()
    out = (c.root / "driver.log").read_text()
    figures["sweep_s"] = round(time.monotonic() - t0 - figures["cluster_up_s"], 1)
    figures["driver_exit"] = driver.returncode
    figures["kills"] = kills
    figures["kills_raylet"] = sum(k["what"] == "raylet" for k in kills)
    figures["kills_trial_process"] = sum(k["what"] == "trial process" for k in kills)

    def counts() -> dict[str, int]:
        rows = read_table(str(sweep), "trials") if _rows(sweep) else None
        ids = [] if rows is None else list(rows["trial_id"])
        seeds = [] if rows is None else [(int(s), float(e)) for s, e in zip(rows["seed"], rows["eps"])]
        return {"rows": len(ids), "trials_with_a_row": len(set(seeds)), "duplicated_rows": len(ids) - len(set(ids))
                + len(seeds) - len(set(seeds)), "lost": TRIALS - len(set(seeds) & set(expected)),
                "retried": 0 if rows is None else int((rows["attempts"] > 1).sum()),
                "error_rows": 0 if rows is None else int((rows["status"] == "error").sum())}

    figures["after_chaos"] = counts()
    if figures["after_chaos"]["lost"]:  # what the chaos left unfinished: a resume runs it
        resume = _in(c, "head", *command, "--resume", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        resumed, _ = resume.communicate(timeout=300)
        figures["resume_exit"] = resume.returncode
        out += resumed
    final = figures["after_resume"] = counts()
    figures["total_s"] = round(time.monotonic() - t0, 1)
    (c.root / "driver.log").write_text(out)
    with capsys.disabled():
        print("\ncluster chaos figures:", json.dumps(figures, indent=1))
        keep = os.environ.get("DRIFT_CHAOS_KEEP")  # a folder: the driver's output and the figures go there
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(c.root / "driver.log", keep)
            Path(keep, "figures.json").write_text(json.dumps(figures, indent=1))
    assert not reboot_errors, reboot_errors
    assert len(kills) >= 3, f"too few kills landed: {kills}\n{out[-3000:]}"
    assert final["duplicated_rows"] == 0 and final["lost"] == 0 and final["rows"] == TRIALS, (final, out[-4000:])
    rows = read_table(str(sweep), "trials")
    statuses = {(int(s), float(e)): st for s, e, st in zip(rows["seed"], rows["eps"], rows["status"])}
    errors = {(int(s), float(e)): (int(a), m) for s, e, a, m in zip(rows["seed"], rows["eps"], rows["attempts"], rows["error"])
              if isinstance(m, str)}
    assert statuses == expected, ({s: (statuses.get(s), e) for s, e in expected.items() if statuses.get(s) != e},
                                  "errors (attempts, message):", errors, out[-3000:])
    # and no resume was needed: a trial Tune gave up on before it ran (its node going down) ran again in the
    # same sweep (the runner's rounds, tune/writer.lost_before_start)
    assert figures["after_chaos"]["lost"] == 0, (figures["after_chaos"], out[-3000:])
