"""The Ray Tune adapter: the function trainable and what Tune needs to schedule it (param_space,
searcher, scheduler).  Thin: Tune parameters -> TrialConfig -> `run_trial`, the eval scalars -> `tune.report` (every
eval under a scheduler, else at most one a second, REPORT_EVERY_S); the
curves, spectra and samples go from the trial straight to the sweep folder (`CurveStore`).

The driver-side callbacks live in `writer.py` (Parquet files) and `progress.py` (progress lines).
Only `ray.tune` APIs are used: the `ray.train` twins of report/RunConfig break Tune in Ray 2.60.
"""

from __future__ import annotations

import math
import socket
import time
import uuid
from typing import Any, Callable, Optional, Protocol

from ray import tune

from ..spaces import VARIANT_PARAM, SearchSpace
from ..spine import record
from .ray_compat import quiet_exit_in_callbacks

CONTEXT_KEYS = ("node", "device_used", "threads", "versions")  # sent with every report
SUMMARY_KEY = "summary"  # the trial's last report carries run_trial's summary under this key
ATTEMPT_KEY = "attempt_id"  # one id per run of the trainable: a retry starts a new attempt
# the last report carries the trial's curves only when the trial could not write them itself (CurveStore)
CURVES_KEY = "curves"
STORAGE_KEY = "storage_error"  # the cause of a failed curves write: the sweep stops (exit 74)
# true when the reported time_to_eps is the searcher's stand-in (extrapolation or the 10 x budget cap),
# not a convergence time: the column that tells them apart in Tune's data (docs/live.md)
ESTIMATED_KEY = f"{record.OBJECTIVE}_estimated"
HEAVY_KEYS = (*record.SPECTRUM_KEYS, record.SAMPLES_KEY)  # never through Tune: the trial writes them
FLUSH_S = 5.0  # a running trial's curves on disk are at most this many seconds behind its reports
REPORT_EVERY_S = 1.0  # without a scheduler Tune hears a running trial's scalars at most this often (each
# report waits for the driver, ~13 ms: 40% of a quickstart trial's time); the last one and the curves always
# A large sweep (more trials than this) is lean: Tune's per-trial logger files are off (sweep.tune_runner) and each
# eval report carries only what Tune and the progress lines use (Tune keeps statistics of every numeric key of
# every trial on the driver: its memory grows with the trials), not every curve metric (the Parquet curves have them).
LARGE_SWEEP_TRIALS = 1000


class CurveStore(Protocol):
    """Where a trial writes its curves, spectra and samples (the sweep folder's `TrialCurves`)."""

    def write(self, trial_id: str, reports: list[dict[str, Any]]) -> bool: ...


# ---- the trainable (runs on the workers) --------------------------------------------------------

def node_identity() -> str:
    """hostname/ip/node-id-prefix: distinct per Ray node even when nodes share a host."""
    import ray

    ctx = ray.get_runtime_context()
    return f"{socket.gethostname()}/{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:12]}"


class _Curves:
    """A trial's reports kept on the trial's side, written to the store at the end, every FLUSH_S seconds
    (so a trial killed mid-run leaves its curves so far), and at every report when a scheduler may stop it."""

    def __init__(self, store: Optional[CurveStore], trial_id: str, every_report: bool) -> None:
        self.store, self.trial_id, self.every_report = store, trial_id, every_report
        self.rows: list[dict[str, Any]] = []
        self.written = False  # the store holds every row
        self.failure: Optional[str] = None
        self._last_flush = time.monotonic()

    def add(self, metrics: dict[str, Any]) -> None:
        self.rows.append(metrics)
        self.written = False
        if self.every_report or time.monotonic() - self._last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the rows so far (nothing once a write failed, or where the store is out of reach)."""
        self._last_flush = time.monotonic()
        if self.store is None or self.failure is not None or self.written:
            return
        try:
            self.written = self.store.write(self.trial_id, self.rows)
        except OSError as err:  # the folder's StorageError: the driver stops the sweep
            self.failure = str(err)
            return
        if not self.written:
            self.store = None  # out of reach from this node: the rows go with the last report

    def final(self) -> dict[str, Any]:
        """What the last report says of the curves: their failure, or the rows when they are not written."""
        self.flush()
        if self.failure is not None:
            return {STORAGE_KEY: self.failure}
        return {} if self.written else {CURVES_KEY: self.rows}


def make_trainable(space: SearchSpace, store: Optional[CurveStore] = None) -> Callable[[dict], None]:
    """The function trainable of a sweep: resolve the config, run the one trial loop, report every eval's
    scalars to Tune and write its curves, spectra and samples to `store` (None: all of it through Tune)."""

    def drift_trial(params: dict) -> None:
        import torch  # here, on the worker: the driver never imports torch (2 s and ~150 MB of its start)

        from ..trial import resolve_device, run_trial, versions

        quiet_exit_in_callbacks()
        cfg = space.resolve(params)
        torch.set_num_threads(space.threads)
        context = {"node": node_identity(), "device_used": str(resolve_device(cfg.device)),
                   "threads": torch.get_num_threads(), "versions": versions()}
        context[ATTEMPT_KEY] = uuid.uuid4().hex
        t_budget = cfg.steps * cfg.dt
        curves = _Curves(store, tune.get_context().get_trial_id(), every_report=bool(space.scheduler))
        last: dict[str, Any] = {}
        lean = space.trial_count() > LARGE_SWEEP_TRIALS
        sent = [-math.inf]  # when Tune last heard from this trial

        def report(metrics: dict[str, Any]) -> None:
            curves.add(metrics)
            last.clear()
            last.update((k, v) for k, v in metrics.items() if k not in HEAVY_KEYS
                        and (not lean or k in ("step", "t", cfg.converge_on, space.metric)))
            if not space.scheduler and time.monotonic() - sent[0] < REPORT_EVERY_S:
                return  # nothing schedules on it: the final report carries the last scalars
            sent[0] = time.monotonic()
            value = metrics.get(cfg.converge_on)
            objective = record.time_to_eps(metrics["t"], value, cfg.eps, t_budget)
            estimated = value is None or not bool(record.converged(metrics["step"], value, cfg.eps))
            tune.report({**last, record.OBJECTIVE: objective, ESTIMATED_KEY: estimated, **context})

        try:
            summary = run_trial(cfg, report)
        except BaseException:
            curves.flush()  # the error row finds the curves so far
            raise
        tune.report({**last, record.OBJECTIVE: record.objective(summary, cfg.eps, t_budget, cfg.converge_on),
                     ESTIMATED_KEY: summary["status"] != record.CONVERGED, **context, SUMMARY_KEY: summary,
                     **curves.final()})

    return drift_trial


MEMBER_KEY = "member"  # a packed trial's report of one finished configuration carries its index under this key
PACK_PARAM, member_id = record.PACK_PARAM, record.member_id


def make_packed_trainable(space: SearchSpace, packs: list[list[dict]],
                          store: Optional[CurveStore] = None) -> Callable[[dict], None]:
    """The trainable of a packed sweep: pack `params[PACK_PARAM]`'s configurations trained in lockstep
    (`run_pack`); each one's curves written under its own id, and one report when each one finishes."""

    def drift_pack(params: dict) -> None:
        import torch

        from ..trial import resolve_device, run_pack, versions

        quiet_exit_in_callbacks()
        members = packs[int(params[PACK_PARAM])]
        cfgs = [space.resolve(p) for p in members]
        torch.set_num_threads(space.threads)
        context = {"node": node_identity(), "device_used": str(resolve_device(cfgs[0].device)),
                   "threads": torch.get_num_threads(), "versions": versions(), ATTEMPT_KEY: uuid.uuid4().hex}
        tid = tune.get_context().get_trial_id()
        curves = [_Curves(store, member_id(tid, j), every_report=False) for j in range(len(cfgs))]
        best: list[float] = []

        def reporter(j: int) -> Callable[[dict[str, Any]], None]:
            def report(metrics: dict[str, Any]) -> None:
                curves[j].add(metrics)
            return report

        def finished(j: int, summary: dict[str, Any]) -> None:
            cfg = cfgs[j]
            objective = record.objective(summary, cfg.eps, cfg.steps * cfg.dt, cfg.converge_on)
            best.append(objective if space.metric == record.OBJECTIVE
                        else summary.get(record.FINAL_PREFIX + space.metric))
            tune.report({MEMBER_KEY: j, SUMMARY_KEY: summary, space.metric: best[-1], **context,
                         ESTIMATED_KEY: summary["status"] != record.CONVERGED, **curves[j].final()})

        try:
            run_pack(cfgs, [reporter(j) for j in range(len(cfgs))], on_finish=finished)
        except BaseException:
            for c in curves:
                c.flush()
            raise

    return drift_pack


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


def search_alg(space: SearchSpace, storage: Any = None, study_name: Optional[str] = None) -> Any:
    """The searcher: Tune's grid/random generator, or Optuna's TPE seeded from the space (its study in
    `storage`, e.g. `drift_sweeps.tune.live.optuna_storage`, so optuna-dashboard can read it; else in memory)."""
    if space.search == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=space.metric, mode=space.mode, sampler=optuna.samplers.TPESampler(seed=space.seed),
                            storage=storage, study_name=study_name)
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
