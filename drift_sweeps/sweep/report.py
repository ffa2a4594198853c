"""The end of a sweep: the comparison table, where the files are, and, when it did not finish, the command
that continues it (exit 130 for SIGINT, 143 for SIGTERM)."""

from __future__ import annotations

import argparse
import logging
import shlex
from typing import Optional

from .. import results
from .folder import CONFIGS_DIR, SPEC_FILE, table_counts
from .plan import DEFAULT_RESULTS, Plan

log = logging.getLogger("drift_sweeps")

EXIT_INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, like a shell


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


def report(p: Plan, args: Optional[argparse.Namespace] = None, signame: Optional[str] = None) -> int:
    """After the trials (or for a finished sweep): the comparison table, where the files are.

    Exit code: 0 when every trial has its row; 130 (SIGINT) / 143 (SIGTERM) when interrupted, with the
    command that continues the sweep on the last line.
    """
    space = p.space
    finished = p.folder.finished_count()
    complete = not signame and finished >= space.trial_count()
    if complete:  # compacted before the table, which then reads a few files instead of one per trial per table
        p.folder.compact()  # (3000 trials: 0.4 s and 170 MB instead of 39 s and 1.2 GB); an unfinished sweep: later
    print()
    try:
        from analysis.headline import format_markdown, headline_table

        print(format_markdown(headline_table(p.sweep_root)))
    except ImportError as err:
        log.warning("comparison table unavailable (analysis package not importable: %s)", err)
    except Exception as err:  # noqa: BLE001 - the sweep's files are written; a table failure must not hide that
        log.error("comparison table failed: %s: %s", type(err).__name__, err)
    n = table_counts(p.folder)
    print(f"\nParquet results ({n['trials']} trials): {p.sweep_root}/{{{','.join(results.TABLES)}}}/ "
          f"- e.g. pandas.read_parquet('{results.table_uri(p.sweep_root, 'trials')}')")
    print(f"spec and trial configs: {p.sweep_root}/{SPEC_FILE}, {p.sweep_root}/{CONFIGS_DIR}/")
    if not complete:
        how = resume_command(args) if args is not None else "--resume"
        print(f"interrupted{' by ' + signame if signame else ''}: {finished} of {space.trial_count()} trials "
              f"finished; continue with: {how}", flush=True)
        return EXIT_INTERRUPTED.get(signame or "SIGINT", 130)
    return 0


def interrupted(p: Plan, args: argparse.Namespace, signame: str) -> int:
    """The last line of a sweep stopped by a signal before `report` could run; -> its exit code."""
    recorded = p.folder.recorded()
    finished = p.folder.finished_count() if recorded else 0
    print(f"\ninterrupted by {signame}: {finished} of {p.space.trial_count()} trials finished; continue with: "
          f"{resume_command(args, resume=recorded)}", flush=True)
    return EXIT_INTERRUPTED[signame]
