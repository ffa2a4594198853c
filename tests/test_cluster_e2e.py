"""`ray up` for real: cluster-local.yaml launched on three namespace "machines", used, damaged, torn down.

What a user of a lab's own machines types, from the repository root of the launching machine (this
host, outside the cluster's network, which reaches the nodes over SSH only):

    ray get-auth-token --generate
    ray up <config> -y
    ray exec <config> "cd ~/drift_sweeps && python -m drift_sweeps.run quickstart --smoke --results <shared>"
    ray exec <config> "ray status"
    ray exec <config> "... --resume"          (after the driver was killed)
    ray down <config> -y

<config> is cluster-local.yaml with only the machine-specific fields filled in (addresses, SSH user
and key, CPUs per node, a check instead of `pip install -e` since the nodes share this host's Python
environment).  The nodes are network namespaces (tests/netns_cluster.py); the results folder is a
local path every namespace sees, as an NFS mount would be.  Fault: SIGKILL of the driver, then
`--resume` (raylets and trial processes dying mid-sweep are tests/test_cluster_chaos.py's, on a cluster
of `ray start` nodes: the same recovery, without the launcher's minutes).  Security: token mode on every node, and from
outside only SSH reaches the cluster.  Everything made is removed, and that is checked, even when a
step fails.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from drift_sweeps.results import read_table
from netns_cluster import NamespaceCluster, connect_errno, missing_requirements

REPO = Path(__file__).resolve().parent.parent
BIN = os.path.dirname(sys.executable)  # `ray` of this environment (no pyenv shims: HOME changes)
QUICKSTART_TRIALS = 8
# the driver-kill sweep: the driver dies at its first finished row, so shorter trials do (its resume runs the rest)
SHORT = ("--set", "steps=150", "--set", "eps=0.01")
RAY_PORTS = {"GCS": 6379, "object manager": 8076, "dashboard": 8265, "client server": 10001}

pytestmark = pytest.mark.slow


def timed(log: Path, *argv: str, env: dict, timeout: float, check: bool = True) -> tuple[float, str]:
    """Run a launcher command from the repository root; (seconds, output); the output goes to `log` too."""
    t0 = time.monotonic()
    res = subprocess.run(list(argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    out = res.stdout + res.stderr
    with open(log, "a") as f:
        f.write(f"$ {' '.join(argv)}   # {elapsed:.1f} s, exit {res.returncode}\n{out}\n")
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {res.returncode}:\n{out[-4000:]}")
    return elapsed, out


@pytest.fixture
def cluster() -> Iterator[NamespaceCluster]:
    reason = missing_requirements()
    if reason:
        pytest.skip(f"needs network namespaces with sshd: {reason}")
    root = Path(tempfile.mkdtemp(prefix="dse2e-", dir="/tmp"))  # short: Ray's socket paths live below
    c = NamespaceCluster(root)

    def terminated(signum, frame):  # a CI timeout's SIGTERM still removes everything below
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        signal.signal(signal.SIGTERM, previous)
        keep = os.environ.get("DRIFT_E2E_KEEP")  # a folder: the nodes' logs and the launcher's go there
        if keep:
            shutil.copytree(root, keep, dirs_exist_ok=True, symlinks=True,
                            ignore=shutil.ignore_patterns("drift_sweeps", "*.sock", "sockets", "shared"))
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left behind: {left}"


def launcher_config(c: NamespaceCluster) -> dict:
    """cluster-local.yaml for the namespaces: machine-specific fields only."""
    config = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
    config["cluster_name"] = c.cluster_name
    config["provider"]["head_ip"] = c.ips["head"]
    config["provider"]["worker_ips"] = [c.ips[n] for n in c.names[1:]]
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(c.key)}
    # The nodes share this host's Python environment: `pip install -e` there would repoint it at a
    # node's copy.  Check instead that the synced checkout imports.
    check = 'cd ~/drift_sweeps && python -c "import drift_sweeps.run, ray"'
    config["head_setup_commands"] = [check]
    config["worker_setup_commands"] = [check]
    # Two cores for three nodes: the head runs the driver only (as on AWS), each worker one trial;
    # a small object store each (they all share this host's memory).  One file system: a worker
    # would otherwise put its sockets into the head's temp folder (Ray's default for workers).
    caps = " --object-store-memory=150000000 --temp-dir=$RAY_TMPDIR/ray"
    config["head_start_ray_commands"][-1] += " --num-cpus=0" + caps
    config["worker_start_ray_commands"][-1] += " --num-cpus=1" + caps
    return config


def trials(sweep_root: Path):
    return read_table(str(sweep_root), "trials")


def node_ip(node: str) -> str:
    return node.split("/")[1]  # `hostname/ip/ray-node-id`


def wait_for(predicate, timeout: float, what: str, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def row_files(sweep_root: Path) -> int:
    folder = sweep_root / "trials"
    return len([p for p in folder.glob("*.parquet") if not p.name.startswith(".")]) if folder.exists() else 0


def test_ray_up_sweep_faults_and_down(cluster: NamespaceCluster, capsys) -> None:
    c = cluster
    t_start = time.monotonic()
    log = c.root / "launcher.log"
    shared = c.root / "shared" / "results"  # what every node sees at the same path (an NFS mount)
    shared.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(c.root / "launcher"), RAY_TMPDIR=str(c.root / "launcher" / "tmp"),
               RAY_USAGE_STATS_ENABLED="0", PATH=BIN + os.pathsep + env.get("PATH", ""),
               # Ray 2.60's autoscaler v2 (the `ray up` default) counts the head against the local
               # provider's workers and starts only one of two; v1 starts them all
               RAY_UP_enable_autoscaler_v2="0")
    (c.root / "launcher" / "tmp").mkdir()
    ray = os.path.join(BIN, "ray")
    config_path = c.root / "cluster-e2e.yaml"
    config_path.write_text(yaml.safe_dump(launcher_config(c), sort_keys=False))
    cfg = str(config_path)
    figures: dict[str, object] = {}

    def run_on_head(command: str, timeout: float = 1500, check: bool = True) -> tuple[float, str]:
        return timed(log, ray, "exec", cfg, command, env=env, timeout=timeout, check=check)

    def sweep_cmd(*args: str) -> str:
        return "cd ~/drift_sweeps && python -m drift_sweeps.run " + " ".join(args)

    try:
        # ---- ray up --------------------------------------------------------------------------------
        timed(log, ray, "get-auth-token", "--generate", env=env, timeout=60)
        token = (c.root / "launcher" / ".ray" / "auth_token").read_text().strip()
        figures["ray_up_s"], _ = timed(log, ray, "up", cfg, "-y", "--no-config-cache", env=env, timeout=300)

        def cpus_up() -> float:
            _, out = run_on_head("ray status", timeout=120, check=False)
            m = re.search(r"/(\d+(?:\.\d+)?) CPU", out)
            return float(m.group(1)) if m else 0.0

        wait_for(lambda: cpus_up() >= 2, 300, "both workers to join (ray status)", poll=2)
        figures["cluster_ready_s"] = round(time.monotonic() - t_start, 1)
        # the token reached every node, and every node's Ray runs in token mode
        for name in c.names:
            assert (c.home(name) / ".ray" / "auth_token").read_text().strip() == token, name
            raylets = c.find(name, "/raylet")
            assert raylets, f"no raylet on {name}"
            environ = Path(f"/proc/{raylets[0]}/environ").read_bytes().split(b"\0")
            assert b"RAY_AUTH_MODE=token" in environ, name

        # ---- security: from outside only SSH; inside, Ray's ports answer to holders of the token ----
        head = c.ips["head"]
        assert connect_errno(head, 22) == 0
        for what, port in RAY_PORTS.items():
            code = connect_errno(head, port)
            assert code == errno.EHOSTUNREACH, f"{what} port {port} of the head from outside: errno {code}"
        assert connect_errno(head, 6379, netns=c.ns("w1")) == 0  # the GCS does listen (inside)
        assert connect_errno(head, 8265, netns=c.ns("w1")) == errno.ECONNREFUSED  # dashboard: loopback only
        intruder = subprocess.run(
            ["ip", "netns", "exec", c.ns("w1"), sys.executable, "-c",
             f"import ray; ray.init(address='{head}:6379'); print('JOINED')"],
            env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32,
                 "RAY_TMPDIR": str(c.root / "w1" / "tmp")},
            capture_output=True, text=True, timeout=120)
        assert "JOINED" not in intruder.stdout and intruder.returncode != 0
        assert re.search(r"[Aa]uthenticat|[Uu]nauthenticated|token", intruder.stderr), intruder.stderr[-2000:]

        # ---- a sweep on the cluster ------------------------------------------------------------------
        figures["sweep_s"], out = run_on_head(sweep_cmd("quickstart", "--smoke", "--results", str(shared)))
        assert "joining the running cluster" in out, out[-3000:]
        rows = trials(shared / "quickstart-smoke")
        assert len(rows) == QUICKSTART_TRIALS and rows["trial_id"].is_unique
        assert set(rows["status"]) <= {"converged", "censored"}, rows[["trial_id", "status", "error"]]
        nodes = dict(zip(rows["trial_id"], rows["node"]))
        figures["sweep_nodes"] = nodes
        worker_ips = {c.ips[n] for n in c.names[1:]}
        used = {node_ip(n) for n in nodes.values()}
        # workers only, never the head; both when the second's first worker process started in time (on
        # a loaded machine the first can run all 8 trials, as Tune reuses its actors)
        assert used and used <= worker_ips, nodes
        figures["sweep_workers_used"] = sorted(used)
        for table in ("curves", "spectra"):
            assert set(read_table(str(shared / "quickstart-smoke"), table)["trial_id"]) == set(nodes)
        _, status = run_on_head("ray status")
        figures["ray_status"] = status[status.find("Node status"):][:600]

        # ---- a fault: SIGKILL the driver, then --resume ---------------------------------------------
        root_c = shared / "driver-kill"
        args_c = ("quickstart", *SHORT, "--name", "driver-kill", "--results", str(shared))
        driver = subprocess.Popen([ray, "exec", cfg, sweep_cmd(*args_c)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: row_files(root_c) >= 1, 240, "the first finished trial of driver-kill", poll=0.05)
            pids = c.find("head", "--name driver-kill")
            pids = [p for p in pids if "bash" not in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
            assert pids, "driver process not found on the head"
            os.kill(pids[0], signal.SIGKILL)
            figures["driver_killed_after_rows"] = row_files(root_c)
            out_c, _ = driver.communicate(timeout=120)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        assert figures["driver_killed_after_rows"] < QUICKSTART_TRIALS
        assert driver.returncode != 0
        # a resumed sweep keeps the spec recorded in sweep.json: no --set again
        figures["resume_s"], _ = run_on_head(sweep_cmd("quickstart", "--name", "driver-kill", "--results",
                                                       str(shared), "--resume"))
        rows = trials(root_c)
        assert len(rows) == QUICKSTART_TRIALS and rows["trial_id"].is_unique, rows[["trial_id", "status"]]
        assert set(rows["status"]) <= {"converged", "censored"}
        configs = json.loads((root_c / "sweep.json").read_text())["trial_configs"]
        assert len(configs) == QUICKSTART_TRIALS
        for table in ("curves", "spectra"):
            assert set(read_table(str(root_c), table)["trial_id"]) == set(rows["trial_id"])

        # ---- ray down ----------------------------------------------------------------------------------
        figures["ray_down_s"], _ = timed(log, ray, "down", cfg, "-y", env=env, timeout=180)
        assert not c.find("head", "/raylet") and not c.find("head", "gcs_server"), "Ray still runs on the head"
        # With the local provider `ray down` runs `ray stop` on the head only: the workers' raylets exit
        # once their GCS is gone (about a minute), their agents stay.  README: `ray stop` on each worker.
        figures["worker_ray_processes_after_down"] = {n: len(c.find(n, "ray")) for n in c.names[1:]}
        for name in c.names[1:]:
            timed(log, "ssh", "-i", str(c.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                  "-o", "BatchMode=yes", f"root@{c.ips[name]}", "source ~/.bashrc; ray stop", env=env, timeout=120)
        wait_for(lambda: not any(c.find(n, "ray") for n in c.names), 60, "no Ray process on any node", poll=1)
    finally:
        figures["total_s"] = round(time.monotonic() - t_start, 1)
        with capsys.disabled():
            print("\ncluster e2e figures:", json.dumps(figures, indent=1, default=str))
