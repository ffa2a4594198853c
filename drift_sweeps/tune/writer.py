"""The results writer: a driver-side `tune.Callback` that writes each trial's trials row when the trial
completes or errors, through the sweep folder (`drift_sweeps.sweep.folder.SweepFolder`, passed in: the sweep
package builds on this one, not the reverse).  The trial wrote its curves, spectra and samples itself
(`adapter.CurveStore`); a trial that could not reach the folder sends them with its last report, and this
writer writes them.  The driver keeps one scalar report per running trial, nothing per finished one.

One writer per file, atomic renames, files named after the Tune trial id: a re-run trial replaces its
files instead of adding rows.  A retry starts a new attempt of the trainable (a new `attempt_id` in
its reports): only the last attempt's reports are kept.

A row is written only for a trial that finished: it returned its summary, the scheduler stopped it, or it
failed for good.  Once the sweep is interrupted (`stop_recording`), trials that end without a summary are
not recorded (they were stopped by the interrupt, not finished), and nothing is ever made up from a
trial's last result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Protocol

from ray import tune
from ray.tune.experiment import Trial

from .. import results
from ..spaces import VARIANT_PARAM, SearchSpace
from ..spine import record
from .adapter import ATTEMPT_KEY, CONTEXT_KEYS, CURVES_KEY, STORAGE_KEY, SUMMARY_KEY
from .progress import ProgressReporter
from .ray_compat import quiet_storage_loggers

log = logging.getLogger(__name__)


class TrialFiles(Protocol):
    """What the writer needs of a sweep folder (`SweepFolder` has it)."""

    def write_config(self, trial_id: str, params: Mapping[str, Any], config: Mapping[str, Any]) -> None: ...

    def record_trial(self, trial_id: str, row: Mapping[str, Any], reports: Iterable[Mapping[str, Any]]) -> None: ...

    def record_row(self, trial_id: str, row: Mapping[str, Any]) -> None: ...

    def discard_unfinished(self) -> set[str]: ...


@dataclasses.dataclass
class _TrialState:
    """What the driver holds of one running trial: its current attempt's last report and context."""

    attempt: Optional[str] = None
    last: Optional[dict[str, Any]] = None  # the last eval's scalars
    curves: Optional[list[dict[str, Any]]] = None  # only from a trial that could not write them
    summary: Optional[dict[str, Any]] = None
    context: dict[str, str] = dataclasses.field(default_factory=dict)
    time_total_s: Optional[float] = None


class ResultsWriter(tune.Callback):
    """Writes each trial's Parquet files when it completes or errors; tells the progress reporter."""

    def __init__(self, space: SearchSpace, sweep: str, folder: TrialFiles, git_commit: Optional[str],
                 driver_versions: str, progress: Optional[ProgressReporter] = None,
                 keep: Optional[set[str]] = None) -> None:
        self.space = space
        self.sweep = sweep
        self.folder = folder
        self.git_commit = git_commit
        self.driver_versions = driver_versions
        self.progress = progress
        self.swept = space.swept_keys()
        self.keep = set(keep or ())  # finished trials of earlier runs of this sweep (a resume)
        self.recording = True  # False once the sweep is interrupted
        self.failure: Optional[OSError] = None  # the first failed write (StorageError): the sweep stops
        self.lost: set[str] = set()  # trials Tune ended before they ran, with retries left: the runner reruns them
        self._state: dict[str, _TrialState] = {}

    def stop_recording(self) -> None:
        """The sweep is being interrupted: from now on only trials that return their summary get a row."""
        self.recording = False

    def setup(self, **info: Any) -> None:
        """Start of fit (also after a restore): runtime state is per fit."""
        self._state = {}

    def _store(self, write: Any, *args: Any) -> bool:
        """Run one write of the folder; a failed one (StorageError) is kept, and nothing is written after it."""
        if self.failure is not None:
            return False
        try:
            write(*args)
        except OSError as err:  # the folder's StorageError (a Tune callback's exception would fail the trial)
            self.failure = err
            quiet_storage_loggers()
            return False
        return True

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """After a failed write: end fit() at once (the runner turns it into exit 74)."""
        if self.failure is not None:
            raise self.failure

    def _st(self, trial: Trial) -> _TrialState:
        return self._state.setdefault(trial.trial_id, _TrialState())

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Record the trial's full config before it trains."""
        self._state[trial.trial_id] = _TrialState()
        self._store(self.folder.write_config, trial.trial_id, trial.config,
                    self.space.resolve(trial.config).to_dict())

    def on_trial_result(self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any) -> None:
        """Keep the last eval report of the current attempt (or the final summary)."""
        st = self._st(trial)
        attempt = result.get(ATTEMPT_KEY)
        if attempt != st.attempt:  # a new attempt (a retry) starts from step 0: drop the old one's report
            st.attempt, st.last, st.summary, st.curves = attempt, None, None, None
        st.context = {k: result[k] for k in CONTEXT_KEYS if k in result}
        st.time_total_s = result.get("time_total_s")
        if result.get(STORAGE_KEY) and self.failure is None:  # the trial's own write failed
            self.failure = OSError(result[STORAGE_KEY])
        if SUMMARY_KEY in result:
            st.summary = dict(result[SUMMARY_KEY])
            st.curves = result.get(CURVES_KEY)
            return
        if result.get("step") is not None:
            st.last = {k: result.get(k) for k in record.CURVE_METRICS}

    def on_trial_recover(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """A failed trial will be retried from scratch."""
        log.warning("trial %s failed (%s); retrying (%d/%d)", trial.trial_id, error_message(trial),
                    trial.num_failures, self.space.max_failures)
        self._state[trial.trial_id] = _TrialState()

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Write the trial's files; a trial without a summary was stopped early by the scheduler, or (when the
        space has no scheduler, or the sweep is being interrupted) did not finish: no row then."""
        st = self._st(trial)
        note = None
        summary = st.summary
        if summary is None:
            if not self.recording or not self.space.scheduler or st.last is None:
                log.info("trial %s stopped before it finished; not recorded (it runs again on resume)",
                         trial.trial_id)
                self._state.pop(trial.trial_id, None)
                return
            summary = self._partial_summary(trial, st, record.CENSORED)
            note = "stopped early by the scheduler"
        self._write(trial, st, summary, error=None, attempts=1 + trial.num_failures, note=note)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Record a trial that failed for good: status error, the message, and its curves so far."""
        st = self._st(trial)
        if not self.recording:
            log.info("trial %s ended during the interrupt; not recorded (it runs again on resume)", trial.trial_id)
            self._state.pop(trial.trial_id, None)
            return
        if self.lost_before_start(trial):
            return
        summary = self._partial_summary(trial, st, record.ERROR)
        self._write(trial, st, summary, error=error_message(trial), attempts=max(1, trial.num_failures))

    def lost_before_start(self, trial: Trial) -> bool:
        """Whether Tune ended the trial although it had retries left: a failure while the trial is PENDING (its
        actor died starting, e.g. on a node going down) is final in Tune whatever `max_failures` says.  Not an
        error of the trial: no row, and the runner runs it again."""
        if not trial.should_recover():
            return False
        log.warning("trial %s lost its node before it started (%s); it runs again", trial.trial_id,
                    error_message(trial))
        self.lost.add(trial.trial_id)
        self._state.pop(trial.trial_id, None)
        return True

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Remove temporaries and the partial files (configs, curves, spectra) of every trial without a row:
        a trial without a row did not finish, and runs again on resume.  Nothing is written here."""
        if self.failure is not None:
            return  # the resume removes what is partial
        written = self.folder.discard_unfinished()
        unknown = written - self.keep - self.ids_of(trials)
        if unknown:
            log.warning("rows of trial(s) neither of this run nor kept from an earlier one: %s", ", ".join(sorted(unknown)))

    # ---- helpers ----
    def ids_of(self, trials: list) -> set[str]:
        """The trial ids whose rows these Tune trials write."""
        return {t.trial_id for t in trials}

    def _partial_summary(self, trial: Trial, st: _TrialState, status: str) -> dict[str, Any]:
        """A summary built from the reports received so far (trial stopped or failed)."""
        cfg = self.space.resolve(trial.config)
        return record.summary(status, st.last or {}, convergence_time=None,
                              n_samples=cfg.n_samples, wall_time_s=st.time_total_s,
                              device_used=st.context.get("device_used"), threads=st.context.get("threads"))

    def _write(self, trial: Trial, st: _TrialState, summary: Mapping[str, Any], *, error: Optional[str],
               attempts: int, note: Optional[str] = None, quiet: bool = False,
               member: Optional[tuple[str, Mapping[str, Any]]] = None) -> None:
        """Write a trial's row (a packed trial's `member`: (its id, its parameters))."""
        tid, params = member or (trial.trial_id, trial.config)
        cfg = self.space.resolve(params).to_dict()
        variant = params.get(VARIANT_PARAM) if len(self.space.variants) > 1 else None
        row = results.trial_row(
            sweep=self.sweep, trial_id=tid, config=cfg, summary=summary,
            node=st.context.get("node"), attempts=attempts, error=error, swept_axes=self.swept, variant=variant,
            versions=json.loads(st.context.get("versions") or self.driver_versions), git_commit=self.git_commit,
        )
        if st.curves is not None:  # the trial could not reach the folder: its curves came with its last report
            written = self._store(self.folder.record_trial, tid, row, st.curves)
        else:
            written = self._store(self.folder.record_row, tid, row)
        if member is None:
            self._state.pop(trial.trial_id, None)
        if not written:
            return  # never reported as finished: it has no row
        if self.progress is not None and not quiet:
            self.progress.trial_written(trial, row, note=note, member=member)


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Failure|Interrupt|Exit)\w*)(?:\(.*?\))?: (.*)$")


def error_message(trial: Trial) -> str:
    """'ExceptionType: message' of the trial's last error, from the text error file Tune writes.

    The pickled error file next to it is never loaded: unpickling runs code, and the file lives in the
    results folder.  Tune writes the error to the trial's local folder before calling the callbacks and
    copies it to storage later, so the local file is read first.
    """
    text = ""
    try:
        local = trial.error_file
        if local and os.path.exists(local):
            text = Path(local).read_text(errors="replace")[-100_000:]
        else:
            text = trial.get_error() or ""
    except Exception:  # noqa: BLE001 - an unreadable error file must not hide the failure itself
        text = ""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for line in reversed(lines):  # the innermost exception: the last 'Type: message' line
        m = _EXC_LINE.match(line)
        if m:
            return f"{m.group(1)}: {m.group(2)}"[:2000]
    return lines[-1][:2000] if lines else "unknown error"
