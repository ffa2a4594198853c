"""`python -m drift_sweeps.run SPACE --serial`: a grid sweep's trials one after another in this
process, without Ray.

For a machine where Ray is not installed or not wanted (one GPU box, a debugger, a profiler): the
same validation, sweep folder, `sweep.json`, Parquet files and final table as a Tune sweep, through
the same trial loop (`trial.run_trial`) and the same row builder (`results.trial_row`).  Trial ids
are `serial_<index>` in grid order; running the command again continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
import traceback
from typing import Any, Callable

from . import results
from .spine import record
from .spaces import VARIANT_PARAM, SearchSpace, SpaceError, jsonable

log = logging.getLogger(__name__)

ID_PREFIX = "serial_"


def _trial_id(index: int) -> str:
    return f"{ID_PREFIX}{index:05d}"


def pending(space: SearchSpace, kept: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(trial id, Tune-style parameters) of every grid trial without a row, in grid order."""
    if space.search != "grid":
        raise SpaceError(f"--serial runs grid sweeps; {space.source} searches with {space.search!r} "
                         "(run it without --serial)")
    out, index = [], 0
    for params in space.grid_points():
        for _ in range(space.num_samples):
            tid = _trial_id(index)
            if tid not in kept:
                out.append((tid, params))
            index += 1
    return out


def _line(done: int, total: int, tid: str, params: dict[str, Any], row: dict[str, Any], secs: float) -> str:
    what = " ".join(f"{k}={v}" for k, v in params.items())
    t = row.get("convergence_time")
    worst = row.get("final_worst_rel_error")
    outcome = (f"T={t:.3g}" if isinstance(t, float) and math.isfinite(t)
               else f"worst error {worst:.3g}" if isinstance(worst, float) else "no evaluation")
    return f"[{done}/{total}] {tid} {what}: {row['status']} {outcome} ({secs:.1f} s on {row.get('device_used')})"


def run_serial(space: SearchSpace, sweep: str, sweep_root: str, kept: dict[str, dict[str, Any]], commit: Any,
               versions: str, say: Callable[[str], None] = print) -> int:
    """Run the grid trials without a row; -> how many ran.  An exception in a trial is recorded as its
    `error` row (like a Tune trial that failed for good); KeyboardInterrupt stops between writes: the
    trial that was running has no files and runs again next time."""
    from .trial import resolve_device, run_trial

    todo = pending(space, kept)
    total = space.trial_count()
    swept = space.swept_keys()
    node = f"{socket.gethostname()}/serial"
    for n, (tid, params) in enumerate(todo, start=len(kept) + 1):
        cfg = space.resolve(params)
        results.write_json(sweep_root, f"configs/{tid}.json",
                           {"trial_id": tid, "params": jsonable(params), "config": cfg.to_dict()})
        device_used = str(resolve_device(cfg.device))
        reports: list[dict[str, Any]] = []
        start = time.perf_counter()
        error = None
        try:
            summary = run_trial(cfg, reports.append)
        except Exception as err:  # noqa: BLE001 - a failing trial is recorded, the sweep goes on
            error = f"{type(err).__name__}: {err}"[:2000]
            log.debug("trial %s failed:\n%s", tid, traceback.format_exc())
            summary = record.summary(record.ERROR, reports[-1] if reports else {}, convergence_time=None,
                                     n_samples=cfg.n_samples, wall_time_s=time.perf_counter() - start,
                                     device_used=device_used)
        variant = params.get(VARIANT_PARAM) if len(space.variants) > 1 else None
        row = results.trial_row(sweep=sweep, trial_id=tid, config=cfg.to_dict(), summary=summary, node=node,
                                error=error, swept_axes=swept, variant=variant, versions=json.loads(versions),
                                git_commit=commit)
        results.write_trial(sweep_root, tid, row)
        results.write_curves(sweep_root, tid, reports)
        results.write_spectra(sweep_root, tid, reports)
        results.write_samples(sweep_root, tid, reports)
        say(_line(n, total, tid, params, row, time.perf_counter() - start) + (f" - {error}" if error else ""))
    return len(todo)
