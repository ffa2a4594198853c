"""Running a planned sweep: the folder's lock, what the folder holds (`plan.settle`), one of the two
runners under our signal handlers, and the exit code."""

from __future__ import annotations

import argparse
import signal

from .folder import StorageError, one_line
from .plan import Plan, settle
from .report import interrupted, report, resume_command
from .runner import Runner
from .signals import Interrupts


def make_runner(serial: bool) -> Runner:
    """The serial runner (no Ray imported) or the Tune runner."""
    if serial:
        from .serial import SerialRunner

        return SerialRunner()
    from .tune_runner import TuneRunner

    return TuneRunner()


def drive(p: Plan, args: argparse.Namespace) -> int:
    """Lock the sweep folder, settle the plan against it and run what is missing; returns the exit code.

    Raises LockHeld when another driver holds the folder, StorageError when the lock cannot be written,
    SpaceError for what can only be refused now.
    """
    try:
        lock = p.folder.lock()
        lock.acquire()
    except OSError as err:
        raise StorageError(f"{p.sweep_root}: cannot take the sweep folder's lock ({type(err).__name__}: "
                           f"{one_line(err)[:300]})") from None
    failed = False
    try:
        p = settle(p, args)
        if p.mode == "done":
            print(f"{p.sweep_root} holds this sweep, finished ({p.finished} of {p.space.trial_count()} trials); its "
                  "table follows (--overwrite runs it again, --name NAME runs a new copy)", flush=True)
            return report(p, args)
        if p.mode == "resume" and not args.resume:
            print(f"{p.sweep_root} holds this sweep, unfinished ({p.finished} of {p.space.trial_count()} trials): "
                  "continuing it", flush=True)
        try:
            return execute(make_runner(args.serial), p, args)  # a complete sweep is compacted by its report
        except StorageError as err:
            failed = True  # its lock may be undeletable too: the resume takes a dead driver's lock over
            raise StorageError(f"{one_line(err)}; {storage_tally(p)}; fix the cause and continue with: "
                               f"{resume_command(args)}") from None
    finally:
        lock.release(failed=failed)


def storage_tally(p: Plan) -> str:
    """'N of M trials recorded' after a storage failure, from what this driver kept and wrote (reading the
    failed storage back could take its retries again)."""
    return f"{p.folder.recorded_count()} of {p.space.trial_count()} trials recorded"


def execute(runner: Runner, p: Plan, args: argparse.Namespace) -> int:
    """Run under our signal handlers: an interrupt ends with the command that continues the sweep."""
    interrupts = Interrupts()
    with interrupts:  # until Ray has shut down: a signal then is noted, and the shutdown finishes
        try:
            code = runner.run(p, args, interrupts)
        except (KeyboardInterrupt, SystemExit) as stop:
            if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
                raise
            # SystemExit(15): SIGTERM while ray.init ran (Ray's own handler exits with the signal number)
            code = interrupted(p, args, interrupts.signame or ("SIGTERM" if isinstance(stop, SystemExit) else "SIGINT"))
        finally:
            interrupts.closing = True
            try:
                runner.close()
            except KeyboardInterrupt:  # a second signal as Ray shut down: stopped at once
                pass
    if code == 0 and interrupts.signame:  # a signal came as Ray shut down, after the sweep's table
        return interrupted(p, args, interrupts.signame)
    return code
