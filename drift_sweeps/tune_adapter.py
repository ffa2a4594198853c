"""The Ray Tune adapter: the function trainable, the Tune search space, and the Parquet writer callback.

The trainable only translates: Tune parameters -> TrialConfig -> `run_trial`, every eval ->
`tune.report`.  The results are written on the driver by `ResultsWriter`, a `tune.Callback`
that buffers each trial's reports and writes its three Parquet files when the trial completes
or errors (one writer per file, atomic renames).  Only `ray.tune` APIs are used: the
`ray.train` twins of report/RunConfig break Tune in Ray 2.60.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ray import cloudpickle, tune
from ray.tune.experiment import Trial

from . import __version__, results
from .config import TrialConfig
from .core.metrics import noise_floor
from .spaces import VARIANT_PARAM, SearchSpace
from .trial import CURVE_METRICS, resolve_device, run_trial

log = logging.getLogger(__name__)

CONFIG_TYPES = {f.name: (f.type if isinstance(f.type, str) else str(f.type)) for f in dataclasses.fields(TrialConfig)}
CONTEXT_KEYS = ("node", "device_used", "versions")  # strings sent with every report
SPECTRUM_KEYS = ("spectrum_k", "spectrum_error")
SUMMARY_KEY = "summary"  # the trial's last report carries run_trial's summary under this key
NO_PROGRESS_FACTOR = 10.0  # time_to_eps of a trial that has made no progress: this x its time budget
PROGRESS_EVERY_S = 30.0  # seconds between the progress lines about running trials


def time_to_eps(t: float, worst_rel_error: float, eps: float, t_budget: float) -> float:
    """The searcher objective: time to reach eps, extrapolated while the trial has not.

    Converged (worst <= eps): t.  Otherwise the worst relative error is extrapolated log-linearly
    from (0, 1) through (t, worst): t log(eps) / log(worst).  No progress yet, a diverged trial or
    an estimate beyond it: NO_PROGRESS_FACTOR x the trial's time budget, a finite value TPE can rank.
    """
    cap = NO_PROGRESS_FACTOR * t_budget
    if not math.isfinite(worst_rel_error) or t <= 0 or worst_rel_error >= 1.0:
        return cap
    if worst_rel_error <= eps:
        return t
    return min(cap, t * math.log(eps) / math.log(worst_rel_error))


# ---- the trainable (runs on the workers) --------------------------------------------------------

_VERSIONS: Optional[str] = None


def versions() -> str:
    """JSON of the package versions in this process (cached)."""
    global _VERSIONS
    if _VERSIONS is None:
        import numpy
        import ray
        import torch

        _VERSIONS = json.dumps({
            "python": platform.python_version(), "drift_sweeps": __version__, "torch": torch.__version__,
            "cuda": torch.version.cuda, "ray": ray.__version__, "numpy": numpy.__version__,
        }, sort_keys=True)
    return _VERSIONS


def node_identity() -> str:
    """hostname/ip/node-id-prefix: distinct per Ray node even when nodes share a host."""
    import ray

    ctx = ray.get_runtime_context()
    return f"{socket.gethostname()}/{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:12]}"


def make_trainable(space: SearchSpace) -> Callable[[dict], None]:
    """The function trainable of a sweep: resolve the config, run the one trial loop, report every eval."""

    def drift_trial(params: dict) -> None:
        import torch

        cfg = space.resolve(params)
        torch.set_num_threads(max(1, int(space.cpu)))  # as many threads as CPUs reserved for the trial
        context = {"node": node_identity(), "device_used": str(resolve_device(cfg.device)), "versions": versions()}
        t_budget = cfg.steps * cfg.dt
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any]) -> None:
            last.clear()
            last.update(metrics)
            objective = time_to_eps(metrics["t"], metrics["worst_rel_error"], cfg.eps, t_budget)
            tune.report({**metrics, "time_to_eps": objective, **context})

        summary = run_trial(cfg, report)
        objective = (summary["convergence_time"] if summary["status"] == "converged"
                     else time_to_eps(summary["t_final"], summary["final_worst_rel_error"], cfg.eps, t_budget))
        scalars = {k: v for k, v in last.items() if k not in SPECTRUM_KEYS}
        tune.report({**scalars, "time_to_eps": objective, **context, SUMMARY_KEY: summary})

    return drift_trial


# ---- the Tune search space ------------------------------------------------------------------------

def param_space(space: SearchSpace) -> dict[str, Any]:
    """Tune's param_space: only the swept parameters (the base config travels with the trainable)."""
    out: dict[str, Any] = {}
    for a in space.axes:
        values = list(a.values)
        if a.kind == "grid":
            out[a.key] = tune.grid_search(values)
        elif a.kind == "choice":
            out[a.key] = tune.choice(values)
        elif a.kind == "loguniform":
            out[a.key] = tune.loguniform(*values)
        elif a.kind == "uniform":
            out[a.key] = tune.uniform(*values)
        elif a.kind == "randint":
            out[a.key] = tune.randint(*values)
        else:  # pragma: no cover - spaces.py only builds the kinds above
            raise ValueError(f"unknown axis kind {a.kind}")
    if len(space.variants) > 1:
        out[VARIANT_PARAM] = tune.grid_search([v.name for v in space.variants])
    return out  # a single variant is not a parameter: SearchSpace.resolve applies it by default


def search_alg(space: SearchSpace) -> Any:
    """The searcher: Tune's grid/random generator, or Optuna's TPE seeded from the space."""
    if space.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=space.metric, mode=space.mode, sampler=optuna.samplers.TPESampler(seed=space.seed))
    if space.search == "random":
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=space.seed)
    return None


def reports_per_trial(space: SearchSpace) -> int:
    """An upper bound on a trial's reports: one per eval plus the summary (ASHA's max_t)."""
    worst = 0
    for params in space.grid_points():
        cfg = space.resolve(params)
        worst = max(worst, cfg.steps // cfg.eval_every + 3)
        if space.search == "optuna":
            break  # steps/eval_every are not searched by the shipped spaces; one config is enough
    return worst


def scheduler(space: SearchSpace) -> Any:
    """ASHA over reports (training_iteration) when the space asks for it."""
    if not space.scheduler:
        return None
    from ray.tune.schedulers import ASHAScheduler

    s = space.scheduler
    return ASHAScheduler(time_attr="training_iteration", max_t=reports_per_trial(space),
                         grace_period=int(s["grace_period"]), reduction_factor=float(s["reduction_factor"]))


# ---- the results writer (runs on the driver) --------------------------------------------------------

@dataclasses.dataclass
class _TrialState:
    reports: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    summary: Optional[dict[str, Any]] = None
    context: dict[str, str] = dataclasses.field(default_factory=dict)
    time_total_s: Optional[float] = None
    latest: Optional[tuple[float, float]] = None  # (t, worst_rel_error) of the last report


class ResultsWriter(tune.Callback):
    """Writes each trial's trials/curves/spectra Parquet files when it completes or errors.

    A trial retried after a failure starts again from step 0, so its buffered reports are dropped
    then; the file names are the Tune trial ids, which a restored experiment keeps, so a re-run
    trial replaces its files instead of adding rows.  At the end, files of trials the experiment
    does not know (left by a run killed before Tune saved its state) are removed.
    """

    def __init__(self, space: SearchSpace, sweep: str, sweep_root: str, git_commit: Optional[str],
                 driver_versions: str) -> None:
        self.space = space
        self.sweep = sweep
        self.sweep_root = sweep_root
        self.git_commit = git_commit
        self.driver_versions = driver_versions
        self.swept = space.swept_keys()
        self._state: dict[str, _TrialState] = {}
        self._done = 0
        self._total = space.trial_count()
        self._started = self._last_progress = time.monotonic()

    def setup(self, total_num_samples: Optional[int] = None, **info: Any) -> None:
        """Start of fit (also after a restore): runtime state is per fit."""
        self._state = {}
        self._done = 0
        self._total = total_num_samples or self._total
        self._started = self._last_progress = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Every PROGRESS_EVERY_S: one line on the running trials (live progress)."""
        now = time.monotonic()
        running = [t for t in trials if t.status == Trial.RUNNING]
        if now - self._last_progress < PROGRESS_EVERY_S or not running:
            return
        self._last_progress = now
        finished = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        pending = sum(t.status == Trial.PENDING for t in trials)
        parts = []
        for t in running:
            latest = self._state.get(t.trial_id, _TrialState()).latest
            parts.append(f"{t.trial_id} t={latest[0]:g} worst={latest[1]:.3g}" if latest else f"{t.trial_id} starting")
        log.info("... %d/%d finished, %d pending, %.0f s; running: %s", finished, max(self._total, len(trials)),
                 pending, now - self._started, "; ".join(parts))

    def _st(self, trial: Trial) -> _TrialState:
        return self._state.setdefault(trial.trial_id, _TrialState())

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Record the trial's full config before it trains."""
        self._state[trial.trial_id] = _TrialState()
        cfg = self.space.resolve(trial.config).to_dict()
        results.write_json(self.sweep_root, f"configs/{trial.trial_id}.json",
                           {"trial_id": trial.trial_id, "params": _jsonable(trial.config), "config": cfg})

    def on_trial_result(self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any) -> None:
        """Buffer one eval report (or keep the final summary)."""
        st = self._st(trial)
        st.context = {k: result[k] for k in CONTEXT_KEYS if k in result}
        st.time_total_s = result.get("time_total_s")
        if SUMMARY_KEY in result:
            st.summary = dict(result[SUMMARY_KEY])
            return
        step = result.get("step")
        if step is None:
            return
        if st.reports and step <= st.reports[-1]["step"]:
            st.reports.clear()  # the trial started over (a retry): keep only the new attempt
        st.reports.append({k: result.get(k) for k in (*CURVE_METRICS, *SPECTRUM_KEYS)})
        st.latest = (result.get("t"), result.get("worst_rel_error"))

    def on_trial_recover(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """A failed trial will be retried from scratch."""
        log.warning("trial %s failed (%s); retrying (%d/%d)", trial.trial_id, _error_message(trial),
                    trial.num_failures, self.space.max_failures)
        self._state[trial.trial_id] = _TrialState()

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Write the trial's files; a trial without a summary was stopped early by the scheduler."""
        st = self._st(trial)
        note = None
        summary = st.summary
        if summary is None:
            summary = self._partial_summary(trial, st, "censored")
            note = "stopped early by the scheduler"
        self._write(trial, st, summary, error=None, attempts=1 + trial.num_failures, note=note)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Record a trial that failed for good: status error, the message, and its curves so far."""
        st = self._st(trial)
        summary = self._partial_summary(trial, st, "error")
        self._write(trial, st, summary, error=_error_message(trial), attempts=max(1, trial.num_failures))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Remove files of trials this experiment does not know; report finished trials without files."""
        known = {t.trial_id for t in trials}
        results.remove_temporaries(self.sweep_root)
        removed = results.remove_trials(self.sweep_root, lambda tid: tid not in known)
        if removed:
            log.info("removed the files of %d trial(s) left by an interrupted run: %s", len(removed),
                     ", ".join(sorted(removed)))
        written = results.trial_ids(self.sweep_root)
        for t in trials:
            if t.status in (Trial.TERMINATED, Trial.ERROR) and t.trial_id not in written:
                log.warning("trial %s finished (%s) but has no trials row; writing one from its last result",
                            t.trial_id, t.status)
                st = _TrialState(time_total_s=(t.last_result or {}).get("time_total_s"))
                status = "error" if t.status == Trial.ERROR else "censored"
                summary = dict((t.last_result or {}).get(SUMMARY_KEY) or self._partial_summary(t, st, status))
                self._write(t, st, summary, error=_error_message(t) if status == "error" else None,
                            attempts=max(1, t.num_failures), quiet=True)

    # ---- helpers ----
    def _partial_summary(self, trial: Trial, st: _TrialState, status: str) -> dict[str, Any]:
        """A summary built from the reports received so far (trial stopped or failed)."""
        last = st.reports[-1] if st.reports else {}
        cfg = self.space.resolve(trial.config)
        return {
            "status": status, "convergence_time": None, "steps_run": last.get("step"), "t_final": last.get("t"),
            "final_loss": last.get("loss"), "final_drift_rms": last.get("drift_rms"),
            "final_worst_rel_error": last.get("worst_rel_error"), "final_sample_distance": last.get("sample_distance"),
            "noise_floor": noise_floor(cfg.n_samples), "wall_time_s": st.time_total_s,
            "device_used": st.context.get("device_used"),
        }

    def _write(self, trial: Trial, st: _TrialState, summary: Mapping[str, Any], *, error: Optional[str],
               attempts: int, note: Optional[str] = None, quiet: bool = False) -> None:
        cfg = self.space.resolve(trial.config).to_dict()
        row = results.trial_row(
            sweep=self.sweep, trial_id=trial.trial_id, config=cfg, summary=summary,
            node=st.context.get("node"), attempts=attempts, error=error, swept_axes=self.swept,
            versions=json.loads(st.context.get("versions") or self.driver_versions), git_commit=self.git_commit,
        )
        results.write_trial(self.sweep_root, trial.trial_id, row, CONFIG_TYPES)
        results.write_curves(self.sweep_root, trial.trial_id, st.reports)
        results.write_spectra(self.sweep_root, trial.trial_id, st.reports)
        self._state.pop(trial.trial_id, None)
        if quiet:
            return
        self._done += 1
        label = ", ".join(f"{k}={_short(v)}" for k, v in trial.config.items()) or "base"
        outcome = row["status"]
        if row["status"] == "converged":
            outcome += f" at t={row['convergence_time']:g}"
        elif row.get("final_worst_rel_error") is not None and math.isfinite(row["final_worst_rel_error"]):
            outcome += f" (worst_rel_error {row['final_worst_rel_error']:.3g} at t={row['t_final']:g})"
        if note:
            outcome += f", {note}"
        if error:
            outcome += f" after {attempts} attempt(s): {error}"
        wall = row.get("wall_time_s")
        log.info("[%d/%d] %s  %s: %s  (%s on %s)", self._done, self._total, trial.trial_id, label, outcome,
                 f"{wall:.1f} s" if wall is not None else "?", row.get("node") or "?")


def _error_message(trial: Trial) -> str:
    """'ExceptionType: message' of the trial's last error.

    Tune writes the error to the trial's local folder before calling the callbacks and copies it
    to storage later, so the local files are read first.
    """
    exc: Any = None
    try:
        local = trial.pickled_error_file
        if local and os.path.exists(local):
            with open(local, "rb") as f:
                exc = cloudpickle.load(f)
        else:
            exc = trial.get_pickled_error()
    except Exception:  # noqa: BLE001 - an unreadable error file must not hide the failure itself
        exc = None
    if exc is not None:
        cause = getattr(exc, "cause", None) or exc
        return f"{type(cause).__name__}: {cause}"
    text = ""
    try:
        local = trial.error_file
        if local and os.path.exists(local):
            text = Path(local).read_text()
        else:
            text = trial.get_error() or ""
    except Exception:  # noqa: BLE001
        text = ""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ",".join(_short(x) for x in v) + ")"
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if type(v).__module__ == "numpy" and hasattr(v, "item"):
        return v.item()
    return v
