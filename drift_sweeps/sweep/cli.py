"""`python -m drift_sweeps.run [SPACE] [options]`: run a search space as a Ray Tune sweep, write Parquet.

Order of work: read and validate the space and every override (no Ray yet); with --dry-run stop
there; connect to Ray (the running cluster if there is one, else an embedded local Ray); write
the resolved spec next to the results; run the Tuner (or restore it with --resume); print the
comparison table and where the files are.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import collections
import logging
import math
import os
import shlex
import signal
import socket
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

from . import results
from .ray_compat import last_cluster_address
from .spine.config import ConfigError
from .spine.record import STATUSES
from .spaces import (MAX_TRIALS, SearchSpace, SpaceError, check_gpus, check_name, list_spaces, load_space,
                     parse_overrides, spaces_dir)

log = logging.getLogger("drift_sweeps")

DEFAULT_SPACE = "quickstart"
DEFAULT_RESULTS = "results/"
TUNE_DIR = "tune"  # Tune's own experiment state, inside the sweep folder
SPEC_FILE = "sweep.json"  # the resolved spec, written before training starts
MAX_SPEC_BYTES = 256 * 2**20  # sweep.json read back by --resume (every grid trial's config: ~1 KiB each)
MAX_NUM_CPUS = 4096
# Ray puts unix sockets at <temp-dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store; a socket path
# may have at most 107 bytes, so this much is left for the temp folder itself.
TEMP_DIR_MAX = 107 - len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")
EXIT_INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, like a shell


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {_one_line(message)} (see --help)", file=sys.stderr)
        sys.exit(2)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def build_parser() -> argparse.ArgumentParser:
    """The CLI."""
    p = _Parser(
        prog="python -m drift_sweeps.run",
        description="Run a search space (search_spaces/*.yaml) as a Ray Tune sweep; results go to Parquet.",
        epilog="Shipped spaces: " + (", ".join(list_spaces()) or "none found") + f" (in {spaces_dir()}).",
    )
    p.add_argument("space", nargs="?", default=None,
                   help=f"a shipped space name or a path to a .yaml file (default: {DEFAULT_SPACE})")
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help="results root, a local folder or an s3:// URI; the sweep goes to <results>/<name>/ "
                        "(default: %(default)s)")
    p.add_argument("--name", default=None, help="sweep (folder) name (default: the space's name; +'-smoke' with --smoke)")
    p.add_argument("--address", default=None,
                   help="Ray address to join ('auto': a running cluster, required; 'local': always start an "
                        "embedded Ray); default: join the running cluster if there is one, else start an embedded Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of an embedded Ray (default: all)")
    p.add_argument("--temp-dir", default=None, help="temp/log folder of an embedded Ray (default: Ray's, /tmp/ray)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="override the space's num_samples (grid/random: repeats; optuna: trials)")
    p.add_argument("--max-concurrent", type=int, default=None, help="cap on trials running at once")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractions allowed (default: the space's value when the cluster has "
                        "GPUs, else 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config key (value parsed as YAML); repeatable")
    p.add_argument("--smoke", action="store_true",
                   help="cap steps and sample counts for a quick look (results under <name>-smoke)")
    p.add_argument("--dry-run", action="store_true", help="validate, print the trial count and resources, run nothing")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep of the same name from its sweep.json and finished trials "
                        "(running the same command again does this too)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing sweep folder of the same name first")
    p.add_argument("--serial", action="store_true",
                   help="run a grid sweep's trials one after another in this process, without Ray (same folder, "
                        "files and table; for a machine without Ray, a debugger or a profiler)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0,
                   help="Tune's own progress tables: 0 none (one line per finished trial and a progress line "
                        "every 30 s are always printed), 1 status tables, 2 every result (default 0)")
    return p


@dataclasses.dataclass
class Plan:
    """A validated sweep, ready to run."""

    space: SearchSpace
    name: str
    sweep_root: str
    max_concurrent: Optional[int]
    mode: str = "new"  # new: start the sweep; resume: run its unfinished trials; done: every trial is finished
    finished: int = 0  # trials with a row already (resume / done)


def check_flags(args: argparse.Namespace) -> None:
    """Every flag that can be checked without Ray: exit 2 with one line before anything starts."""
    if args.num_cpus is not None and not 1 <= args.num_cpus <= MAX_NUM_CPUS:
        raise SpaceError(f"--num-cpus {_short_num(args.num_cpus)}: must be in [1, {MAX_NUM_CPUS}] (omit it for all CPUs)")
    if args.max_concurrent is not None and not 1 <= args.max_concurrent <= MAX_TRIALS:
        raise SpaceError(f"--max-concurrent {_short_num(args.max_concurrent)}: must be in [1, {MAX_TRIALS}]")
    if args.num_samples is not None and not 1 <= args.num_samples <= MAX_TRIALS:
        raise SpaceError(f"--num-samples {_short_num(args.num_samples)}: must be in [1, {MAX_TRIALS}]")
    if args.gpus_per_trial is not None:
        check_gpus(args.gpus_per_trial, f"--gpus-per-trial {args.gpus_per_trial}:")
    if args.name is not None:
        check_name(args.name, "--name")
    if args.resume and args.overwrite:
        raise SpaceError("--resume and --overwrite contradict each other: pick one")
    check_address(args.address)
    if args.temp_dir is not None:
        check_temp_dir(args.temp_dir)
    check_results_root(args.results)


def _short_num(n: Any) -> str:
    text = str(n)
    return text if len(text) <= 24 else f"{text[:8]}...({len(text)} digits)"


_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)")


def check_address(address: Optional[str]) -> None:
    """--address: auto, local, host:port or ray://host:port."""
    if address is None or address in ("auto", "local"):
        return
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if "://" in rest or not sep or not _HOST_RE.fullmatch(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SpaceError(f"--address {address[:80]!r}: expected auto, local, HOST:PORT or ray://HOST:PORT "
                         "(port 1-65535)")


def check_temp_dir(temp_dir: str) -> None:
    """--temp-dir: short enough for Ray's unix sockets, and a folder we can create."""
    if not temp_dir.strip():
        raise SpaceError("--temp-dir '': give a folder")
    path = os.path.abspath(temp_dir)
    if len(path.encode()) > TEMP_DIR_MAX:
        raise SpaceError(f"--temp-dir {path[:60]!r}...: {len(path.encode())} bytes; allowed: at most {TEMP_DIR_MAX} "
                         "(Ray's unix socket paths inside it are limited to 107 bytes)")
    _check_creatable(path, "--temp-dir")


def check_results_root(root: str) -> None:
    """--results: a local folder we can create and write, or s3://bucket[/prefix]."""
    if not root.strip():
        raise SpaceError("--results '': give a folder or an s3:// URI (an empty path would write to the "
                         "filesystem root)")
    if "://" in root:
        scheme, _, rest = root.partition("://")
        if scheme != "s3":
            raise SpaceError(f"--results {root[:80]!r}: {scheme}:// is not supported; use a local folder or "
                             "s3://bucket/prefix")
        if not rest.partition("?")[0].split("/")[0]:
            raise SpaceError(f"--results {root[:80]!r}: no bucket; expected s3://bucket/prefix")
        return
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", root):
        raise SpaceError(f"--results {root[:80]!r}: looks like a URI, but only s3:// URIs are supported "
                         "(a local folder name cannot start with 'scheme:/')")
    _check_creatable(os.path.abspath(root), "--results")


def _check_creatable(path: str, flag: str) -> None:
    """`path` is a folder, or can be created as one by this user (probed with a temporary folder)."""
    if len(path.encode()) > 3000:
        raise SpaceError(f"{flag} {path[:60]!r}...: path too long")
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise SpaceError(f"{flag} {path[:80]!r}: {probe[:80]!r} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".drift-sweeps-probe-", dir=probe))
    except OSError as err:
        raise SpaceError(f"{flag} {path[:80]!r}: cannot create folders in {probe[:80]!r} "
                         f"({err.strerror or err})") from None


def read_spec(sweep_root: str) -> Optional[dict[str, Any]]:
    """The recorded spec (sweep.json) as plain JSON data, None when absent; never executes anything it reads."""
    try:
        fs, root = results.resolve(sweep_root)
        info = fs.get_file_info(f"{root}/{SPEC_FILE}")
        if info.size is not None and info.size > MAX_SPEC_BYTES:
            raise SpaceError(f"{sweep_root}/{SPEC_FILE}: {info.size} bytes; allowed: at most {MAX_SPEC_BYTES}")
        record = results.read_json(sweep_root, SPEC_FILE)
    except (ValueError, OSError, RecursionError) as err:
        if isinstance(err, SpaceError):
            raise
        raise SpaceError(f"{sweep_root}/{SPEC_FILE}: unreadable ({type(err).__name__}: {_one_line(err)[:200]}); "
                         "pass --overwrite to start the sweep over, or --name to write a new one") from None
    if record is not None and not (isinstance(record, dict) and isinstance(record.get("space"), dict)):
        raise SpaceError(f"{sweep_root}/{SPEC_FILE}: not a sweep record (no 'space' mapping); pass --overwrite "
                         "or --name")
    return record


def recorded_space(sweep_root: str, record: dict[str, Any]) -> SearchSpace:
    """The SearchSpace of a recorded spec, validated again like a space file."""
    try:
        return SearchSpace.from_dict(record["space"])
    except (SpaceError, ConfigError) as err:
        raise SpaceError(f"{sweep_root}/{SPEC_FILE}: the recorded spec is invalid: {err}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise SpaceError(f"{sweep_root}/{SPEC_FILE}: the recorded spec is damaged ({type(err).__name__}: "
                         f"{_one_line(err)[:120]}); pass --overwrite or --name") from None


def _comparable(space: SearchSpace) -> dict[str, Any]:
    d = space.to_dict()
    d.pop("source", None)
    return json.loads(json.dumps(d, sort_keys=True))


def plan(args: argparse.Namespace) -> Plan:
    """Validate everything that can be validated without Ray."""
    check_flags(args)
    if args.resume:
        for flag, given in (("--set", args.overrides), ("--num-samples", args.num_samples)):
            if given:
                raise SpaceError(f"{flag} cannot be combined with --resume: a resumed sweep keeps the spec it "
                                 f"recorded in {SPEC_FILE}")
        name = args.name or (load_space(args.space or DEFAULT_SPACE).name + ("-smoke" if args.smoke else ""))
        sweep_root = results.sweep_uri(args.results, name)
        record = read_spec(sweep_root)
        if record is None:
            raise SpaceError(f"--resume: no sweep to resume at {sweep_root} (no {SPEC_FILE}); run it without --resume")
        space = recorded_space(sweep_root, record)
        return _continuation(Plan(space, name, sweep_root, args.max_concurrent or space.max_concurrent))
    space = load_space(args.space or DEFAULT_SPACE)
    space = space.with_overrides(parse_overrides(args.overrides))
    if args.smoke:
        space = space.smoked()
    if args.num_samples is not None:
        space = space.with_num_samples(args.num_samples)
    name = args.name or (space.name + ("-smoke" if args.smoke else ""))
    check_name(name, "sweep name", limit=120)
    sweep_root = results.sweep_uri(args.results, name)
    p = Plan(space, name, sweep_root, args.max_concurrent or space.max_concurrent)
    if args.dry_run or args.overwrite or not results.sweep_exists(sweep_root) or _only_temporaries(sweep_root):
        return p
    # The folder holds something: the same sweep again continues it (or reports it when finished).
    record = read_spec(sweep_root)
    done = len(results.trial_ids(sweep_root))
    if record is None:
        raise SpaceError(f"{sweep_root} already holds files but no {SPEC_FILE} ({done} trial(s) written): pass "
                         "--overwrite to replace it, or --name to write a new one")
    if _comparable(recorded_space(sweep_root, record)) != _comparable(space):
        old = _comparable(recorded_space(sweep_root, record))
        new = _comparable(space)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise SpaceError(f"{sweep_root} holds a different sweep (its {SPEC_FILE} differs in: {', '.join(diff)}): "
                         "pass --name to write a new one, --overwrite to replace it, or --resume to continue the "
                         "recorded one")
    return _continuation(p)


def _only_temporaries(sweep_root: str) -> bool:
    """True when the sweep folder holds nothing but a killed writer's hidden temporaries (`.tmp-*`)."""
    import pyarrow.fs as pafs

    fs, root = results.resolve(sweep_root)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root))
    except OSError:
        return False
    return bool(entries) and all(os.path.basename(e.path).startswith(".tmp-") for e in entries)


def _continuation(p: Plan) -> Plan:
    """A plan for an existing sweep folder: `done` when every trial has its row, else `resume`."""
    finished = len(finished_rows(p.sweep_root, quiet=True)[0])
    mode = "done" if finished >= p.space.trial_count() else "resume"
    return dataclasses.replace(p, mode=mode, finished=finished)


def finished_rows(sweep_root: str, quiet: bool = False) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(trial id -> its trials row, unreadable files): the finished trials, read file by file (a damaged file
    is reported and its trial counted as unfinished)."""
    import pyarrow.parquet as pq

    fs, paths = results.table_files(sweep_root, "trials")
    rows: dict[str, dict[str, Any]] = {}
    bad: list[str] = []
    for path in paths:
        tid = os.path.basename(path)[: -len(".parquet")]
        try:
            table = pq.read_table(path, filesystem=fs)
            row = table.to_pylist()[0] if table.num_rows == 1 else None
        except Exception as err:  # noqa: BLE001 - any unreadable file: that trial runs again
            row = None
            if not quiet:
                log.warning("%s: unreadable (%s); its trial runs again", path, _one_line(err)[:120])
        if (row is None or row.get("trial_id") != tid or not isinstance(row.get("config_json"), str)
                or row.get("status") not in STATUSES):
            bad.append(path)
            continue
        rows[tid] = row
    return rows, bad


def describe(p: Plan) -> str:
    """What a sweep will run: the --dry-run report."""
    s = p.space
    factors = [f"{a.key}({len(a.values)})" for a in s.axes if a.kind == "grid"]
    if len(s.variants) > 1:
        factors.append(f"variants({len(s.variants)}: {', '.join(v.name for v in s.variants)})")
    if s.search != "optuna":
        formula = " x ".join(factors + ([f"num_samples {s.num_samples}"] if s.num_samples > 1 else [])) or "1"
    else:
        formula = f"num_samples {s.num_samples}"
    dists = [f"{a.key} ~ {a.kind}{list(a.values)}" for a in s.axes if a.kind != "grid"]
    lines = [
        f"{s.name} ({s.source}){': ' + s.description if s.description else ''}",
        f"{s.trial_count()} trials ({s.search} search: {formula})",
    ]
    if dists:
        lines.append("sampled: " + "; ".join(dists))
    lines += [
        f"resources per trial: {s.cpu:g} CPU, {s.gpu:g} GPU when the cluster has GPUs (override: --gpus-per-trial)",
        f"metric: {s.metric} ({s.mode}); scheduler: {s.scheduler['name'] if s.scheduler else 'none'}; "
        f"retries per trial: {s.max_failures}; max concurrent: {p.max_concurrent or 'as resources allow'}",
        f"base config: {json.dumps(dict(s.base), sort_keys=True)}" + (" (--smoke)" if s.smoke else ""),
        f"results: {p.sweep_root}/{{{','.join(results.TABLES)}}}/",
    ]
    return "\n".join(lines)


# ---- Ray ---------------------------------------------------------------------------------------------

def _running_cluster(temp_dir: Optional[str]) -> Optional[str]:
    """Address of a reachable running Ray cluster (RAY_ADDRESS or the last `ray start`), else None."""
    try:
        addr = last_cluster_address(temp_dir)
    except Exception as err:  # noqa: BLE001 - private API; any failure means "none found"
        log.debug("looking for a running Ray cluster failed: %s", err)
        return None
    if not addr or addr.startswith("ray://"):
        return addr
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return addr
    except (OSError, ValueError):
        log.warning("Ray: the last cluster address %s does not answer (stale); not joining it", addr)
        return None


def connect(args: argparse.Namespace) -> bool:
    """Join a running cluster or start an embedded local Ray; the first output line says which.  True when
    this process started an embedded Ray (which then stops with it, see `watch_embedded_ray`)."""
    import ray

    if ray.is_initialized():  # a notebook or test that called ray.init() itself: use that instance
        print("Ray: using the Ray instance this process already joined", flush=True)
        _print_resources()
        return False
    address = args.address
    found: Optional[str] = None
    if address in (None, "auto"):
        found = _running_cluster(args.temp_dir)
        if found is None and address == "auto":
            raise SpaceError("--address auto: no running Ray cluster found (start one with `ray start --head` "
                             "or `ray up cluster.yaml`)")
        address = found
    if address and address != "local":
        if not address.startswith("ray://") and address != found:
            _check_answers(address)
        print(f"Ray: joining the running cluster at {address}", flush=True)
        # a discovered cluster is joined as "auto": only then does Ray take its token from ~/.ray/auth_token
        discovered = address == found and args.address in (None, "auto") and args.temp_dir is None
        ray.init(address="auto" if discovered else address, logging_level=logging.WARNING)
        _print_resources()
        return False
    else:
        cpus = args.num_cpus or os.cpu_count()
        print(f"Ray: no running cluster found; starting an embedded local Ray ({cpus} CPUs)"
              if args.address is None else f"Ray: starting an embedded local Ray ({cpus} CPUs)", flush=True)
        from .live import dashboard_available  # the dashboard starts when ray[default] is installed

        # Ray turns token authentication on for a local cluster by default and says so on every start;
        # that is the behaviour we want, so the notice is not repeated to the user
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(num_cpus=cpus, _temp_dir=os.path.abspath(args.temp_dir) if args.temp_dir else None,
                 include_dashboard=dashboard_available(), logging_level=logging.WARNING)
        watch_embedded_ray()
    _print_resources()
    return True


def _check_answers(address: str) -> None:
    """A HOST:PORT given with --address must answer before Ray is asked to join it (else Ray retries for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
            return
    except (OSError, ValueError) as err:
        raise SpaceError(f"--address {address}: nothing answers there ({getattr(err, 'strerror', None) or err}); "
                         "is the cluster running?") from None


# A separate process that SIGKILLs the embedded Ray's processes (every descendant of the driver it has seen)
# when the driver dies without shutting Ray down (SIGKILL, OOM killer): Ray's own fate sharing leaves agents
# and workers running for a while.
_WATCHDOG = r"""
import os, signal, sys, time
driver = int(sys.argv[1])
signal.signal(signal.SIGINT, signal.SIG_IGN)
def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
def children():
    out = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out.setdefault(int(fields[1]), []).append((int(e), fields[19]))
            except (OSError, IndexError, ValueError):
                pass
    return out
born = start_time(driver)
seen = {}
while start_time(driver) == born and born is not None:
    kids = children()
    todo = [driver]
    while todo:
        for pid, st in kids.get(todo.pop(), []):
            if pid not in seen and pid != os.getpid():
                seen[pid] = st
                todo.append(pid)
    time.sleep(0.5)
for pid, st in seen.items():
    if start_time(pid) == st:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def watch_embedded_ray() -> None:
    """Start the watchdog of an embedded Ray (Linux; elsewhere a no-op)."""
    if not os.path.isdir("/proc/self"):
        return
    try:
        subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid())], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True)
    except OSError as err:
        log.debug("no watchdog for the embedded Ray: %s", err)


def check_resources(space: SearchSpace, gpu: float, embedded: bool) -> None:
    """A trial must fit on one node: an embedded Ray can never grow, so asking for more is an error there;
    a cluster may autoscale, so there it is a warning."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if space.cpu <= cpus and gpu <= gpus:
        return
    msg = (f"a trial needs {space.cpu:g} CPU + {gpu:g} GPU on one node, but the largest Ray node has {cpus:g} CPUs "
           f"and {gpus:g} GPUs")
    if embedded:
        raise SpaceError(f"{msg}: no trial could ever start on this embedded Ray; lower resources.cpu / "
                         "--gpus-per-trial, or give it more with --num-cpus")
    if cpus > 0:
        log.warning("%s: trials wait until a larger node joins (an autoscaler may add one)", msg)


def _print_resources() -> None:
    import ray

    res = ray.cluster_resources()
    print(f"Ray: {len([n for n in ray.nodes() if n.get('Alive')])} node(s), {res.get('CPU', 0):g} CPUs, "
          f"{res.get('GPU', 0):g} GPUs", flush=True)


def gpus_per_trial(space: SearchSpace, requested: Optional[float]) -> float:
    """The GPU share of a trial: the flag, else the space's value when the cluster has GPUs, else 0."""
    import ray

    res = ray.cluster_resources()
    has_gpus = res.get("GPU", 0) > 0
    if requested is not None:
        if requested > 0 and not has_gpus:
            log.warning("--gpus-per-trial %g but the cluster has no GPUs now: trials wait for GPU nodes "
                        "(an autoscaler may add them)", requested)
        return requested
    if not has_gpus and res.get("CPU", 0) == 0:
        log.warning("the cluster has no CPUs or GPUs yet (autoscaling from zero?); trials ask for CPUs only. "
                    "Pass --gpus-per-trial to have GPU nodes started for them")
    return space.gpu if has_gpus else 0.0


# ---- provenance ---------------------------------------------------------------------------------------

def git_commit() -> Optional[str]:
    """HEAD of the checkout the package runs from ('+dirty' with uncommitted changes), None outside git."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def driver_versions() -> str:
    """JSON of the driver's package versions (workers report their own with each trial); null where absent."""
    import importlib.metadata

    from .trial import versions

    def version(name: str) -> Optional[str]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return json.dumps({**json.loads(versions()), **{n: version(n) for n in ("optuna", "pandas", "pyarrow")}},
                      sort_keys=True)


# ---- the sweep --------------------------------------------------------------------------------------

def storage(sweep_root: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Tune: a pyarrow filesystem object for s3://, None locally."""
    fs, path = results.resolve(sweep_root)
    return (path, fs) if "://" in sweep_root else (path, None)


def run_sweep(p: Plan, args: argparse.Namespace, interrupts: Optional["Interrupts"] = None,
              embedded: bool = False) -> int:
    """Run a plan's trials (all of them, or with --resume the unfinished ones); returns the exit code.

    A resume never loads Tune's experiment state (`tune/tuner.pkl` and friends are pickles: whoever can write
    the results folder could run code through them).  It builds a fresh Tuner from the recorded, validated
    spec (`sweep.json`, plain JSON) and the finished trials' rows: grid sweeps run exactly the grid points
    without a row; random sweeps draw the missing samples anew; Optuna continues its study.
    """
    from ray import tune

    from . import live
    from .progress import ProgressReporter
    from .spine.record import CURVE_METRICS
    from .tune_adapter import make_trainable, scheduler, search_alg
    from .writer import ResultsWriter

    space = p.space
    path, fs = storage(p.sweep_root)
    commit, versions = git_commit(), driver_versions()
    gpu = gpus_per_trial(space, args.gpus_per_trial)
    check_resources(space, gpu, embedded)
    trainable = tune.with_resources(make_trainable(space), {"cpu": space.cpu, "gpu": gpu})

    resuming = p.mode == "resume"
    kept = prepare_folder(p, args, space, gpu, commit, versions)
    optuna_db = live.optuna_storage_url(p.sweep_root) if space.search == "optuna" else None
    todo_params, points, searcher = space_for_run(space, kept, p, optuna_db, search_alg, live)
    print(f"sweep {p.name}: {space.trial_count()} trials, {space.cpu:g} CPU + {gpu:g} GPU each, "
          + (f"resuming ({len(kept)} finished, {points} to run)" if resuming else "results")
          + f" in {p.sweep_root}", flush=True)
    for line in live.live_lines(p.sweep_root, live.dashboard_url(), optuna_db):
        print(line, flush=True)
    if points == 0:
        return report(p, None, args)

    progress = ProgressReporter(points, metric=space.metric, mode=space.mode)
    writer = ResultsWriter(space, p.name, p.sweep_root, commit, versions, progress, keep=set(kept))
    callbacks = [writer, progress]
    if live.tensorboard_dir(p.sweep_root):
        callbacks.append(live.TensorBoardWriter(live.tensorboard_dir(p.sweep_root),
                                                [m for m in CURVE_METRICS if m != "step"] + [space.metric]))
    tuner = tune.Tuner(
        trainable,
        param_space=todo_params,
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, scheduler=scheduler(space), search_alg=searcher,
            num_samples=points, max_concurrent_trials=p.max_concurrent, reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=path, storage_filesystem=fs, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=space.max_failures), verbose=args.verbose,
        ),
    )
    if interrupts is not None:
        interrupts.on_first = writer.stop_recording
        interrupts.in_fit = True
    # --verbose 0: our own progress lines only (Tune's new output prints a configuration box and a
    # TensorBoard hint pointing at a temporary folder even when silent; its legacy reporter does not)
    quiet = {"RAY_AIR_NEW_OUTPUT": "0"} if args.verbose == 0 and "RAY_AIR_NEW_OUTPUT" not in os.environ else {}
    os.environ.update(quiet)
    try:
        grid = tuner.fit()
    finally:
        for key in quiet:
            os.environ.pop(key, None)
        if interrupts is not None:
            interrupts.in_fit = False
    return report(p, grid, args, interrupts)


def prepare_folder(p: Plan, args: argparse.Namespace, space: SearchSpace, gpu: float, commit: Optional[str],
                   versions: str) -> dict[str, dict[str, Any]]:
    """The sweep folder before training: on a resume the finished trials' rows (the rest of their files
    removed); otherwise an emptied folder (--overwrite, or only temporaries left) with the spec written.
    -> finished trials (trial id -> trials row)."""
    kept: dict[str, dict[str, Any]] = {}
    if p.mode == "resume":
        kept, _ = finished_rows(p.sweep_root)
        results.remove_temporaries(p.sweep_root)
        removed = results.remove_trials(p.sweep_root, lambda tid: tid not in kept)
        if removed:
            log.info("removed the partial files of %d unfinished trial(s): %s", len(removed), ", ".join(sorted(removed)))
    elif results.sweep_exists(p.sweep_root) and (args.overwrite or _only_temporaries(p.sweep_root)):
        log.info("--overwrite: deleting the previous sweep at %s", p.sweep_root)
        results.remove_sweep(p.sweep_root)

    if p.mode != "resume":
        results.write_json(p.sweep_root, SPEC_FILE, {
            "schema_version": results.SCHEMA_VERSION, "sweep": p.name, "space": space.to_dict(),
            "trial_count": space.trial_count(), "resources_per_trial": {"cpu": space.cpu, "gpu": gpu},
            "results": p.sweep_root, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit, "versions": json.loads(versions), "command": sys.argv,
            "trial_configs": space.trial_configs(),
        })
    return kept


def space_for_run(space: SearchSpace, kept: dict[str, dict[str, Any]], p: Plan, optuna_db: Optional[str],
                  search_alg: Any, live: Any) -> tuple[dict[str, Any], int, Any]:
    """(param_space, num_samples, search_alg) of the trials still to run.

    Fresh sweep: the space as is.  Resume: grid/random presets (the grid points, each as often as it still
    lacks a row) over a param_space of choices, so every preset trial takes exactly its point; Optuna: the
    study continues (the SQLite study in a local sweep folder, else one told the finished trials' results).
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from .tune_adapter import param_space

    if not kept and p.mode != "resume":
        return param_space(space), space.num_samples, search_alg(
            space, live.optuna_storage(p.sweep_root) if optuna_db else None, p.name)
    if space.search == "optuna":
        todo = max(0, space.num_samples - len(kept))
        if optuna_db:
            return param_space(space), todo, search_alg(space, live.optuna_storage(p.sweep_root), p.name)
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        rows = [r for r in kept.values() if math.isfinite(_objective(space, r))]
        points = [{a.key: r[a.key] for a in space.axes} for r in rows]
        searcher = OptunaSearch(metric=space.metric, mode=space.mode,
                                sampler=optuna.samplers.TPESampler(seed=space.seed),
                                points_to_evaluate=points or None,
                                evaluated_rewards=[_objective(space, r) for r in rows] or None)
        return param_space(space), todo, searcher
    # grid / random: the grid part of every missing trial, as presets
    done = collections.Counter(_grid_key(space, json.loads(r["config_json"])) for r in kept.values())
    presets: list[dict[str, Any]] = []
    for params in space.grid_points():
        grid_part = {k: v for k, v in params.items() if k == "variant" or _axis_kind(space, k) == "grid"}
        key = _grid_key(space, space.resolve(params).to_dict())
        missing = space.num_samples - done.get(key, 0)
        for _ in range(max(0, missing)):
            presets.append(dict(grid_part))
        done[key] = space.num_samples  # a point listed once (corners of distributions repeat it)
    choices: dict[str, Any] = {}
    for a in space.axes:
        choices[a.key] = tune.choice(list(a.values)) if a.kind == "grid" else param_space(space)[a.key]
    if len(space.variants) > 1:
        choices["variant"] = tune.choice([v.name for v in space.variants])
    searcher = BasicVariantGenerator(points_to_evaluate=presets or None, random_state=space.seed + len(kept))
    return choices, len(presets), searcher


def _axis_kind(space: SearchSpace, key: str) -> Optional[str]:
    return next((a.kind for a in space.axes if a.key == key), None)


def _grid_key(space: SearchSpace, config: dict[str, Any]) -> str:
    """What identifies a trial's grid point: its whole config, less the keys sampled from distributions."""
    sampled = {a.key for a in space.axes if a.kind != "grid"}
    return json.dumps({k: v for k, v in config.items() if k not in sampled}, sort_keys=True, default=str)


def _objective(space: SearchSpace, row: dict[str, Any]) -> float:
    """The searcher's value of a finished trial's row (what Optuna is told on resume)."""
    from .spine import record

    if space.metric == record.OBJECTIVE:
        value = record.objective(row, row["eps"], row["steps"] * row["dt"])
    else:
        value = row.get(record.FINAL_PREFIX + space.metric)
    return float(value) if isinstance(value, (int, float)) else math.nan


def resume_command(args: argparse.Namespace, resume: bool = True) -> str:
    """The command line that continues this sweep (or, before it recorded anything, starts it again)."""
    parts = ["python -m drift_sweeps.run"]
    if args.space:
        parts.append(shlex.quote(args.space))
    if args.results != DEFAULT_RESULTS:
        parts += ["--results", shlex.quote(args.results)]
    if args.name:
        parts += ["--name", shlex.quote(args.name)]
    if args.smoke:
        parts.append("--smoke")
    if getattr(args, "serial", False):
        parts.append("--serial")
    if args.address:
        parts += ["--address", shlex.quote(args.address)]
    if not resume:
        parts += [f"--set {shlex.quote(o)}" for o in args.overrides]
        if args.num_samples is not None:
            parts += ["--num-samples", str(args.num_samples)]
    return " ".join(parts + (["--resume"] if resume else []))


def report(p: Plan, grid: Any, args: Optional[argparse.Namespace] = None,
           interrupts: Optional["Interrupts"] = None) -> int:
    """After fit (or for a finished sweep): best trial, the comparison table, where the files are.

    Exit code: 0 when every trial has its row; 130 (SIGINT) / 143 (SIGTERM) when interrupted, with the
    command that continues the sweep on the last line.
    """
    space = p.space
    if grid is not None:
        try:
            best = grid.get_best_result(metric=space.metric, mode=space.mode, scope="last")
            value = best.metrics.get(space.metric)
            print(f"\nbest trial: {best.metrics.get('trial_id')}  {space.metric} = {value:.4g}  "
                  f"params: {json.dumps(best.config, default=str, sort_keys=True)}")
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            log.warning("no best trial: %s", err)
    print()
    try:
        from analysis.headline import format_markdown, headline_table

        print(format_markdown(headline_table(p.sweep_root)))
    except ImportError as err:
        log.warning("comparison table unavailable (analysis package not importable: %s)", err)
    except Exception as err:  # noqa: BLE001 - the sweep's files are written; a table failure must not hide that
        log.error("comparison table failed: %s: %s", type(err).__name__, err)
    n = {t: len(results.trial_ids(p.sweep_root, t)) for t in results.TABLES}
    print(f"\nParquet results ({n['trials']} trials): {p.sweep_root}/{{{','.join(results.TABLES)}}}/ "
          f"- e.g. pandas.read_parquet('{results.table_uri(p.sweep_root, 'trials')}')")
    print(f"spec and trial configs: {p.sweep_root}/{SPEC_FILE}, {p.sweep_root}/configs/")
    finished = len(finished_rows(p.sweep_root, quiet=True)[0])
    signame = interrupts.signame if interrupts is not None else None
    if signame or finished < space.trial_count():
        how = resume_command(args) if args is not None else "--resume"
        print(f"interrupted{' by ' + signame if signame else ''}: {finished} of {space.trial_count()} trials "
              f"finished; continue with: {how}", flush=True)
        return EXIT_INTERRUPTED.get(signame or "SIGINT", 130)
    return 0


class Interrupts:
    """SIGINT / SIGTERM during a sweep.  The first stops Tune the way its own Ctrl-C handling does (running
    trials are stopped and not recorded, finished ones are kept); a second one aborts at once.  Replaces
    Ray's SIGTERM handling in the driver (which ends in a C++ stack dump)."""

    def __init__(self) -> None:
        self.signame: Optional[str] = None
        self.in_fit = False
        self.on_first: Any = None
        self._old: dict[int, Any] = {}
        self._env: Optional[str] = None

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards to Tune's (via its SIGUSR1 hook)
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def arm(self) -> None:
        """Install the handlers again (after code that installed its own)."""
        for sig in self._old:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        if self._old:
            if self._env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
        self._old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signame is not None:
            raise KeyboardInterrupt(name)
        self.signame = name
        if self.on_first is not None:
            self.on_first()
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if self.in_fit and callable(tune_stop) and getattr(tune_stop, "__name__", "") == "signal_interrupt_tune_run":
            print(f"\n{name}: stopping the sweep; finished trials are kept, running ones are not recorded "
                  "(send it again to stop at once)", flush=True)
            tune_stop(signal.SIGUSR1, frame)
        else:
            raise KeyboardInterrupt(name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code (2: bad input, 130/143: interrupted by SIGINT/SIGTERM)."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        p = plan(args)
    except (SpaceError, ConfigError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError, OverflowError, TypeError, ValueError, OSError) as err:
        # a bug of ours, not the user's: still one line, and named as such
        print(f"error: internal error while validating the input ({type(err).__name__}: {_one_line(err)[:300]})",
              file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe(p))
        return 0
    if p.mode == "done":
        print(f"{p.sweep_root} holds this sweep, finished ({p.finished} of {p.space.trial_count()} trials); its "
              "table follows (--overwrite runs it again, --name NAME runs a new copy)", flush=True)
        return report(p, None, args)
    if p.mode == "resume" and not args.resume:
        print(f"{p.sweep_root} holds this sweep, unfinished ({p.finished} of {p.space.trial_count()} trials): "
              "continuing it", flush=True)
    if args.serial:
        return serial_sweep(p, args)
    import ray

    joined_here = not ray.is_initialized()
    interrupts = Interrupts()
    try:
        with interrupts:
            embedded = connect(args)
            interrupts.arm()  # again: ray.init installs a SIGTERM handler of its own
            return run_sweep(p, args, interrupts, embedded=bool(embedded) and joined_here)
    except (SpaceError, ConfigError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit) as stop:
        if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
            raise
        # SystemExit(15): SIGTERM while ray.init ran (Ray's own handler exits with the signal number)
        name = interrupts.signame or ("SIGTERM" if isinstance(stop, SystemExit) else "SIGINT")
        try:
            recorded = results.sweep_exists(p.sweep_root) and read_spec(p.sweep_root) is not None
        except (SpaceError, OSError):
            recorded = False
        finished = len(finished_rows(p.sweep_root, quiet=True)[0]) if recorded else 0
        print(f"\ninterrupted by {name}: {finished} of {p.space.trial_count()} trials finished; continue with: "
              f"{resume_command(args, resume=recorded)}", flush=True)
        return EXIT_INTERRUPTED[name]
    finally:
        if joined_here and ray.is_initialized():
            ray.shutdown()  # stops an embedded Ray; only disconnects from a cluster


def serial_sweep(p: Plan, args: argparse.Namespace) -> int:
    """--serial: the grid's trials in this process, no Ray (drift_sweeps.serial)."""
    from .serial import run_serial

    space = p.space
    commit, versions = git_commit(), driver_versions()
    interrupts = Interrupts()
    try:
        kept = prepare_folder(p, args, space, 0.0, commit, versions)
        print(f"sweep {p.name}: {space.trial_count()} trials, one at a time without Ray, results in {p.sweep_root}",
              flush=True)
        with interrupts:
            run_serial(space, p.name, p.sweep_root, kept, commit, versions)
    except SpaceError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        finished = len(finished_rows(p.sweep_root, quiet=True)[0])
        print(f"\ninterrupted: {finished} of {space.trial_count()} trials finished; continue with: "
              f"{resume_command(args)}", flush=True)
        return EXIT_INTERRUPTED[interrupts.signame or "SIGINT"]
    return report(p, None, args)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (pytest and notebooks swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def _setup_logging() -> None:
    if log.handlers:
        return
    handler = _StdoutHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


if __name__ == "__main__":
    sys.exit(main())
