"""`python -m drift_sweeps.run SPACE --serial`: a grid sweep's trials one after another in this
process, without Ray.

For a machine where Ray is not installed or not wanted (one GPU box, a debugger, a profiler): the
same validation, sweep folder, `sweep.json`, Parquet files and final table as a Tune sweep, through
the same trial loop (`trial.run_trial`) and the same row builder (`results.trial_row`).  Trial ids
are `serial_<position>`, the trial's position in grid order; the trials to run are the grid points
without a row (`identity.missing_points`), whichever runner wrote the rows, so running the command
again, with or without --serial, continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import time
import traceback
from typing import Any, Callable, Collection, Mapping

from .. import results
from ..spaces import VARIANT_PARAM, SearchSpace
from ..spine import record
from .folder import SweepFolder
from .identity import missing_points
from .plan import Plan, spec_record
from .provenance import driver_versions, git_commit
from .report import report
from .runner import Runner
from .signals import Interrupts

log = logging.getLogger(__name__)

ID_PREFIX = "serial_"


def _trial_id(position: int) -> str:
    return f"{ID_PREFIX}{position:05d}"


def _free_id(index: int, num_samples: int, taken: Collection[str]) -> str:
    """The first id of grid point `index`'s repeats that no trial holds (`serial_<index * num_samples + r>`)."""
    for r in range(num_samples):
        tid = _trial_id(index * num_samples + r)
        if tid not in taken:
            return tid
    k = 1  # every repeat's id is held by rows of other grid points: a suffix keeps ids unique
    while f"{_trial_id(index * num_samples)}-{k}" in taken:
        k += 1
    return f"{_trial_id(index * num_samples)}-{k}"


def pending(space: SearchSpace, kept: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(trial id, Tune-style parameters) of every grid trial without a row, in grid order."""
    taken = set(kept)
    out = []
    for index, params in missing_points(space, kept):
        tid = _free_id(index, space.num_samples, taken)
        taken.add(tid)
        out.append((tid, params))
    return out


def _line(done: int, total: int, tid: str, params: dict[str, Any], row: dict[str, Any], secs: float) -> str:
    what = " ".join(f"{k}={v}" for k, v in params.items())
    t = row.get("convergence_time")
    metric = row.get("converge_on") or "worst_rel_error"
    worst = row.get("final_" + metric)
    outcome = (f"T={t:.3g}" if isinstance(t, float) and math.isfinite(t)
               else f"{metric} {worst:.3g}" if isinstance(worst, float) else "no evaluation")
    return f"[{done}/{total}] {tid} {what}: {row['status']} {outcome} ({secs:.1f} s on {row.get('device_used')})"


def _run_one(cfg: Any, tid: str, threads: int, stopped: Callable[[], bool] = lambda: False
             ) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """(summary, reports, error) of one trial on `threads` torch threads (as under Ray); an exception is the
    trial's `error` summary, unless a signal came meanwhile (`stopped()`): a KeyboardInterrupt raised inside a
    C call can surface wrapped in another exception (ctypes: ArgumentError), and that trial was interrupted,
    not failed."""
    import torch

    from ..trial import resolve_device, run_trial

    reports: list[dict[str, Any]] = []
    start = time.perf_counter()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run_trial(cfg, reports.append), reports, None
    except Exception as err:  # noqa: BLE001 - a failing trial is recorded, the sweep goes on
        if stopped():
            raise KeyboardInterrupt(f"{type(err).__name__}: {err}") from err
        log.debug("trial %s failed:\n%s", tid, traceback.format_exc())
        summary = record.summary(record.ERROR, reports[-1] if reports else {}, convergence_time=None,
                                 n_samples=cfg.n_samples, wall_time_s=time.perf_counter() - start,
                                 device_used=str(resolve_device(cfg.device)), threads=threads)
        return summary, reports, f"{type(err).__name__}: {err}"[:2000]
    finally:
        torch.set_num_threads(before)


def run_serial(space: SearchSpace, sweep: str, folder: SweepFolder, kept: Mapping[str, Mapping[str, Any]],
               commit: Any, versions: str, say: Callable[[str], None] = print,
               stopped: Callable[[], bool] = lambda: False) -> int:
    """Run the grid trials without a row; -> how many ran.  An exception in a trial is recorded as its
    `error` row (like a Tune trial that failed for good); KeyboardInterrupt stops between writes: the
    trial that was running has no row and runs again next time (`stopped()`: whether a signal came)."""
    todo = pending(space, kept)
    total, swept = space.trial_count(), space.swept_keys()
    node = f"{socket.gethostname()}/serial"
    for n, (tid, params) in enumerate(todo, start=len(kept) + 1):
        cfg = space.resolve(params)
        folder.write_config(tid, params, cfg.to_dict())
        start = time.perf_counter()
        summary, reports, error = _run_one(cfg, tid, space.threads, stopped)
        variant = params.get(VARIANT_PARAM) if len(space.variants) > 1 else None
        row = results.trial_row(sweep=sweep, trial_id=tid, config=cfg.to_dict(), summary=summary, node=node,
                                error=error, swept_axes=swept, variant=variant, versions=json.loads(versions),
                                git_commit=commit)
        folder.record_trial(tid, row, reports)
        say(_line(n, total, tid, params, row, time.perf_counter() - start) + (f" - {error}" if error else ""))
    return len(todo)


class SerialRunner(Runner):
    """The trials one after another in this process (no Ray)."""

    def run(self, p: Plan, args: argparse.Namespace, interrupts: Interrupts) -> int:
        """Prepare the folder, run the missing grid trials, report."""
        commit, versions = git_commit(), driver_versions()
        kept = p.folder.prepare(p.mode == "resume", args.overwrite, spec_record(p, 0.0, commit, versions))
        print(f"sweep {p.name}: {p.space.trial_count()} trials, one at a time without Ray, results in "
              f"{p.sweep_root}", flush=True)
        run_serial(p.space, p.name, p.folder, kept, commit, versions,
                   stopped=lambda: interrupts.signame is not None)
        return report(p, args, interrupts.signame)
