"""Live progress of a sweep on the driver: one line per finished trial, and every PROGRESS_EVERY_S seconds
a line with finished/total (a bar), elapsed time, an estimate of the time left, the best objective so
far and where the running trials stand.  A `tune.Callback`; the results writer tells it when a trial's
row is written."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping, Optional

from ray import tune
from ray.tune.experiment import Trial

from ..spine import record

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0  # seconds between the progress lines about running trials
BAR_WIDTH = 16  # characters of the progress bar in the periodic lines


class ProgressReporter(tune.Callback):
    """Progress lines: `[done/total] trial params: outcome (wall time on node)` and periodic summaries."""

    def __init__(self, total: int, metric: str = record.OBJECTIVE, mode: str = "min",
                 converge_on: str = "worst_rel_error", counts_trials: bool = True, before: int = 0) -> None:
        self._before = before  # trials finished by this run's earlier Tuners (a sweep in rounds), counted in
        self._total = before + total  # both the finished and the total
        self._counts_trials = counts_trials  # False: Tune's trials are packs, `total` counts configurations
        self._converge_on = converge_on  # the running trials' convergence metric (the space's base config)
        self._metric, self._mode = metric, mode
        self._best: Optional[tuple[float, str]] = None  # (value, trial id) of the best finished trial
        self._done = 0
        self._latest: dict[str, tuple[float, float]] = {}  # trial id -> (t, convergence metric) of its last report
        self._started = self._last_line = time.monotonic()

    def setup(self, total_num_samples: Optional[int] = None, **info: Any) -> None:
        """Start of fit (also after a restore)."""
        if self._counts_trials and total_num_samples:
            self._total = max(self._total, self._before + total_num_samples)
        self._done = self._before
        self._best = None
        self._latest = {}
        self._started = self._last_line = time.monotonic()

    def on_trial_result(self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any) -> None:
        """Remember where the trial stands."""
        if result.get("t") is not None:
            metric = trial.config.get("converge_on") or self._converge_on  # swept, or the base config's
            self._latest[trial.trial_id] = (result["t"], result.get(metric))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Every PROGRESS_EVERY_S: one line on the running trials."""
        now = time.monotonic()
        running = [t for t in trials if t.status == Trial.RUNNING]
        if now - self._last_line < PROGRESS_EVERY_S or not running:
            return
        self._last_line = now
        finished = self._before + sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        pending = sum(t.status == Trial.PENDING for t in trials)
        parts = []
        for t in running:
            latest = self._latest.get(t.trial_id)
            value = f"{latest[1]:.3g}" if latest and isinstance(latest[1], (int, float)) else "-"
            parts.append(f"{t.trial_id} t={latest[0]:g} {self._converge_on}={value}" if latest
                         else f"{t.trial_id} starting")
        total = max(self._total, self._before + len(trials))
        elapsed = now - self._started
        log.info("... %s %d/%d finished, %d pending, %s%s; %s; running: %s", bar(finished, total), finished, total,
                 pending, duration(elapsed), eta_text(elapsed, finished - self._before, total - self._before),
                 self.best_text(), "; ".join(parts))

    def best_text(self) -> str:
        """'best time_to_eps 9 (trial id)'; for time_to_eps only converged trials count (no stand-ins)."""
        if self._best is None:
            return f"best {self._metric}: none yet" + (" converged" if self._metric == record.OBJECTIVE else "")
        return f"best {self._metric} {self._best[0]:.4g} ({self._best[1]})"

    def _update_best(self, trial_id: str, row: Mapping[str, Any]) -> None:
        if self._metric == record.OBJECTIVE:
            value = row.get("convergence_time") if row.get("status") == record.CONVERGED else None
        else:
            value = row.get(record.FINAL_PREFIX + self._metric)
        if value is None or not math.isfinite(value):
            return
        better = self._best is None or (value < self._best[0] if self._mode == "min" else value > self._best[0])
        if better:
            self._best = (float(value), trial_id)

    def trial_written(self, trial: Trial, row: Mapping[str, Any], note: Optional[str] = None,
                      member: Optional[tuple[str, Mapping[str, Any]]] = None) -> None:
        """One line for a trial (a packed trial's `member`: (id, parameters)) whose row has just been written."""
        self._done += 1
        self._latest.pop(trial.trial_id, None)
        tid, params = member or (trial.trial_id, trial.config)
        self._update_best(tid, row)
        label = ", ".join(f"{k}={_short(v)}" for k, v in params.items()) or "base"
        outcome = row["status"]
        if row["status"] == record.CONVERGED:
            outcome += f" at t={row['convergence_time']:g}"
        else:
            metric = row.get("converge_on") or "worst_rel_error"
            value = row.get("final_" + metric)
            if isinstance(value, float) and math.isfinite(value):
                outcome += f" ({metric} {value:.3g} at t={row['t_final']:g})"
        if note:
            outcome += f", {note}"
        if row.get("error"):
            outcome += f" after {row['attempts']} attempt(s): {row['error']}"
        wall = row.get("wall_time_s")
        log.info("[%d/%d] %s  %s: %s  (%s on %s)", self._done, self._total, tid, label, outcome,
                 f"{wall:.1f} s" if wall is not None else "?", row.get("node") or "?")


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[######----------]`: the finished fraction as a text bar."""
    n = int(round(width * done / total)) if total > 0 else 0
    return "[" + "#" * n + "-" * (width - n) + "]"


def duration(seconds: float) -> str:
    """'41 s', '3 min', '1 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def eta_text(elapsed: float, done: int, total: int) -> str:
    """', ETA 2 min' from the mean time per finished trial so far (nothing before the first one)."""
    if done <= 0 or done >= total:
        return ""
    return f", ETA {duration(elapsed / done * (total - done))}"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_short(x) for x in v) + ")"
    return str(v)
