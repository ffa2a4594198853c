"""`python -m drift_sweeps.run [SPACE] [options]`: the command line, and every flag check that needs no Ray.

Order of work: read and validate the space and every override (`plan`, no Ray yet); with --dry-run stop
there; take the sweep folder's lock and see what the folder holds (`runner.drive`); run the missing trials
on Ray Tune (joining the running cluster if there is one, else an embedded local Ray) or, with --serial,
in this process; print the comparison table and where the files are.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
from typing import Any, Optional, Sequence

from ..spaces import MAX_TRIALS, SpaceError, check_gpus, check_name, list_spaces, spaces_dir
from ..spine.config import ConfigError
from .folder import StorageError, one_line
from .lock import LockHeld
from .plan import DEFAULT_RESULTS, DEFAULT_SPACE, describe, plan
from .driver import drive

log = logging.getLogger("drift_sweeps")


MAX_NUM_CPUS = 4096
EXIT_STORAGE = 74  # the sweep folder's storage failed (sysexits' EX_IOERR)
# Ray puts unix sockets at <temp-dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store; a socket path
# may have at most 107 bytes, so this much is left for the temp folder itself.
TEMP_DIR_MAX = 107 - len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {one_line(message)} (see --help)", file=sys.stderr)
        sys.exit(2)


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
    p.add_argument("--pack", type=int, default=None, metavar="P",
                   help="run up to P configurations per Ray trial as one batched computation (grid sweeps; "
                        "overrides the space's pack)")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code (2: bad input or a folder in use, 74: the folder's storage
    failed, 130/143: interrupted by SIGINT/SIGTERM)."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        check_flags(args)
        p = plan(args)
    except (SpaceError, ConfigError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except (RecursionError, MemoryError, OverflowError, TypeError, ValueError, OSError) as err:
        # a bug of ours, not the user's: still one line, and named as such
        print(f"error: internal error while validating the input ({type(err).__name__}: {one_line(err)[:300]})",
              file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe(p))
        return 0
    try:
        return drive(p, args)
    except (SpaceError, ConfigError, LockHeld) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except StorageError as err:
        # the sweep stopped on its storage: Ray's background uploads of Tune's state to it (a thread that can
        # outlive fit) fail the same way, and would each log a traceback after this line
        from ..tune.ray_compat import quiet_storage_loggers

        quiet_storage_loggers()
        print(f"error: {one_line(err)}", file=sys.stderr)
        return EXIT_STORAGE


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
