"""Machines for the launcher's end-to-end test: Linux network namespaces with their own sshd.

Layout (everything named after `tag`, made and removed by NamespaceCluster):

    this host (the launching machine, "outside")
        | veth <tag>h 10.214.X.2/30
    <tag>-gw   router namespace: forwards between the host link and the cluster bridge; its firewall
        |      lets only tcp/22 in from outside (the rules README.md gives for labs)
        | bridge br0 10.213.X.1/24
    <tag>-head 10.213.X.10,  <tag>-w1 10.213.X.11,  <tag>-w2 10.213.X.12 ...

Each node namespace also has its own PID namespace (sshd is its process 1, so `ray stop` on a node
sees only that node's processes and killing sshd ends the node) and, through sshd's SetEnv, its own
HOME and Ray temp folder.  The file system, and so the Python environment, is shared with the host.
No namespace has a route beyond the router, and the router has none beyond its two links.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

SSHD = "/usr/sbin/sshd"
# The router's firewall, inside its own namespace: from outside, only SSH reaches the cluster.
FIREWALL = [
    "-A FORWARD -o br0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "-A FORWARD -o br0 -p tcp --dport 22 -j ACCEPT",
    "-A FORWARD -o br0 ! -i br0 -j REJECT --reject-with icmp-admin-prohibited",
]


def missing_requirements() -> Optional[str]:
    """Why namespaces with sshd cannot be made here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    for tool in ("ip", "unshare", "iptables", "rsync", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 util-linux iptables rsync openssh-client)"
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"dsprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        firewall = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-L", "FORWARD", "-n"],
                                  capture_output=True, text=True)
        if firewall.returncode != 0:
            return f"iptables does not work inside a namespace: {firewall.stderr.strip()}"
        isolated = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--pid", "--fork", "--mount-proc",
                                   "sh", "-c", "mount --bind / /mnt"], capture_output=True, text=True)
        if isolated.returncode != 0:
            return f"PID and mount namespaces are not available: {isolated.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def connect_errno(host: str, port: int, netns: Optional[str] = None, timeout: float = 3.0) -> int:
    """0 if a TCP connection to host:port opens (from namespace `netns`, else from here), else the errno."""
    if netns is None:
        with socket.socket() as s:
            s.settimeout(timeout)
            return s.connect_ex((host, port))
    code = (f"import socket; s = socket.socket(); s.settimeout({timeout}); "
            f"print(s.connect_ex(({host!r}, {port})))")
    res = sh("ip", "netns", "exec", netns, sys.executable, "-c", code, timeout=timeout + 30)
    return int(res.stdout.strip())


class NamespaceCluster:
    """`n_workers` + 1 SSH-reachable "machines" behind a firewalled router, all under `root`."""

    def __init__(self, root: Path, n_workers: int = 2):
        self.root = root
        pid = os.getpid()
        self.tag = f"dse{pid % 100000}"
        octet = 16 + pid % 200
        self.subnet = f"10.213.{octet}.0/24"
        self.gateway = f"10.213.{octet}.1"
        self.host_ip, self.router_ip = f"10.214.{octet}.2", f"10.214.{octet}.1"
        self.names = ["head"] + [f"w{i + 1}" for i in range(n_workers)]
        self.ips = {name: f"10.213.{octet}.{10 + i}" for i, name in enumerate(self.names)}
        self.key = root / "launcher" / "id_ed25519"
        self.sshd: dict[str, subprocess.Popen] = {}
        self.made: list[str] = []  # namespaces, in creation order
        self.cluster_name = f"drift-sweeps-{self.tag}"  # for the launcher's files in /tmp

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    @property
    def router(self) -> str:
        return f"{self.tag}-gw"

    @property
    def host_link(self) -> str:
        return f"{self.tag}h"

    def home(self, name: str) -> Path:
        return self.root / name / "home"

    # ---- making -------------------------------------------------------------------------------------

    def start(self) -> None:
        taken = sh("ip", "-o", "addr").stdout + sh("ip", "-o", "route").stdout
        for prefix in (self.subnet.rsplit(".", 1)[0] + ".", self.host_ip.rsplit(".", 1)[0] + "."):
            if prefix in taken:
                raise RuntimeError(f"{prefix}0 is already in use on this host")
        self._network()
        self._sshd()

    def _network(self) -> None:
        gw = self.router
        sh("ip", "netns", "add", gw)
        self.made.append(gw)
        sh("ip", "-n", gw, "link", "set", "lo", "up")
        sh("ip", "-n", gw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", gw, "addr", "add", f"{self.gateway}/24", "dev", "br0")
        sh("ip", "-n", gw, "link", "set", "br0", "up")
        sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for rule in FIREWALL:
            sh("ip", "netns", "exec", gw, "iptables", *rule.split())
        # the host's link to the router, and a route to the cluster through it
        sh("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", "up0", "netns", gw)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_link)
        sh("ip", "link", "set", self.host_link, "up")
        sh("ip", "-n", gw, "addr", "add", f"{self.router_ip}/30", "dev", "up0")
        sh("ip", "-n", gw, "link", "set", "up0", "up")
        sh("ip", "route", "add", self.subnet, "via", self.router_ip, "dev", self.host_link)
        for i, name in enumerate(self.names):
            ns = self.ns(name)
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", gw, "link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", gw, "link", "set", f"n{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.ips[name]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            # a default route (Ray finds a node's address from it); the router goes nowhere further
            sh("ip", "-n", ns, "route", "add", "default", "via", self.gateway)

    def _sshd(self) -> None:
        launcher = self.root / "launcher"
        launcher.mkdir(parents=True, exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "drift-sweeps-e2e", "-f", str(self.key))
        host_key = self.root / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
        authorized = self.root / "authorized_keys"
        authorized.write_text(Path(f"{self.key}.pub").read_text())
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder
        path = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin",
                                "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        # Each node gets a home folder of its own, mounted over this user's home in the node's mount
        # namespace (ssh resolves `~` from the password database, not $HOME); folders of the home that
        # hold the Python environment (pyenv, a venv) are mounted back into it.
        home = Path(os.path.expanduser("~")).resolve()
        env_dirs = sorted({home / Path(p).resolve().relative_to(home).parts[0]
                           for p in (sys.prefix, sys.base_prefix, sys.executable, os.path.dirname(os.__file__))
                           if Path(p).resolve().is_relative_to(home) and Path(p).resolve() != home})
        for name in self.names:
            node = self.root / name
            (node / "tmp").mkdir(parents=True)
            self.home(name).mkdir(parents=True)
            # the node's Python environment for login shells (/etc/profile resets PATH), as a lab's
            # ~/.bashrc activates its environment
            (self.home(name) / ".bashrc").write_text(f'export PATH="{os.path.dirname(sys.executable)}:$PATH"\n')
            mounts = []
            for d in env_dirs:
                (self.home(name) / d.name).mkdir()
                mounts.append(f"mount --bind {d} {self.home(name) / d.name}")
            mounts.append(f"mount --rbind {self.home(name)} {home}")
            config = node / "sshd_config"
            config.write_text("\n".join([
                f"ListenAddress {self.ips[name]}", "Port 22", f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                f"PidFile {node / 'sshd.pid'}", "MaxStartups 100", "MaxSessions 100",
                f"SetEnv PATH={path} RAY_TMPDIR={node / 'tmp'} RAY_USAGE_STATS_ENABLED=0",
                "",
            ]))
            script = " && ".join(mounts + [f"exec {SSHD} -D -e -f {config}"])
            log = open(node / "sshd.log", "w")
            self.sshd[name] = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(name), "unshare", "--pid", "--fork", "--mount-proc",
                 "--propagation", "private", "sh", "-c", script],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
        deadline = time.monotonic() + 30
        for name in self.names:  # through the router, as the launcher will
            while connect_errno(self.ips[name], 22, timeout=1.0) != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {name} did not come up: "
                                       f"{(self.root / name / 'sshd.log').read_text()[-2000:]}")
                time.sleep(0.2)

    # ---- looking ----------------------------------------------------------------------------------------

    def pids(self, name: str) -> list[int]:
        """Processes in a node's (or the router's) network namespace."""
        res = sh("ip", "netns", "pids", self.ns(name) if name != "gw" else self.router, check=False)
        return [int(p) for p in res.stdout.split()]

    def find(self, name: str, needle: str) -> list[int]:
        """Pids in a node's namespace whose command line contains `needle` (zombies have none)."""
        found = []
        for pid in self.pids(name):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmd:
                found.append(pid)
        return found

    # ---- removing -----------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Remove everything made here; returns what was still left afterwards (empty when clean)."""
        for ns in self.made:  # sshd is process 1 of its node: killing it ends everything in the node
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.sshd.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        # the launcher's own ssh processes (its connection masters name only their control socket), by pid
        for pid in pids_mentioning(str(self.root)) + pids_mentioning(str(self.control_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.host_link, check=False)
        for path in self.launcher_files():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        time.sleep(0.5)
        return self.leftovers()

    @property
    def control_dir(self) -> Path:
        """Where Ray's launcher keeps this cluster's SSH control sockets (ray.autoscaler's naming)."""
        user = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]
        return Path(f"/tmp/ray_ssh_{user}") / hashlib.sha256(self.cluster_name.encode()).hexdigest()[:10]

    def launcher_files(self) -> list[Path]:
        """What Ray's launcher leaves in /tmp for this cluster: SSH control sockets, cached configs."""
        found = [self.control_dir] if self.control_dir.exists() else []
        for cached in Path("/tmp").glob("ray-config-*"):
            try:
                if self.cluster_name in cached.read_text(errors="replace"):
                    found.append(cached)
            except OSError:
                pass
        return found

    def leftovers(self) -> list[str]:
        left = [f"namespace {ns}" for ns in sh("ip", "netns", "list").stdout.split()
                if ns.startswith(f"{self.tag}-")]
        if self.host_link in sh("ip", "-o", "link").stdout:
            left.append(f"link {self.host_link}")
        if self.subnet in sh("ip", "-o", "route").stdout:
            left.append(f"route {self.subnet}")
        left += [f"process {pid}: {cmd}" for pid, cmd in
                 processes_mentioning(str(self.root)) + processes_mentioning(str(self.control_dir))]
        left += [f"file {p}" for p in self.launcher_files()]
        return left


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(entry), cmd[:200]))
    return found


def pids_mentioning(text: str) -> list[int]:
    return [pid for pid, _ in processes_mentioning(text)]


__all__ = ["NamespaceCluster", "missing_requirements", "connect_errno", "errno", "sh"]
