"""The Ray Tune adapter: the function trainable and what Tune needs to schedule it (param_space,
searcher, scheduler).  Thin: Tune parameters -> TrialConfig -> `run_trial`, every eval -> `tune.report`.

The driver-side callbacks live in `writer.py` (Parquet files) and `progress.py` (progress lines).
Only `ray.tune` APIs are used: the `ray.train` twins of report/RunConfig break Tune in Ray 2.60.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any, Callable, Optional

from ray import tune

from ..spaces import VARIANT_PARAM, SearchSpace
from ..spine import record
from ..trial import resolve_device, run_trial, versions

CONTEXT_KEYS = ("node", "device_used", "versions")  # strings sent with every report
SUMMARY_KEY = "summary"  # the trial's last report carries run_trial's summary under this key
ATTEMPT_KEY = "attempt_id"  # one id per run of the trainable: a retry starts a new attempt
# true when the reported time_to_eps is the searcher's stand-in (extrapolation or the 10 x budget cap),
# not a convergence time: the column that tells them apart in Tune's data (docs/live.md)
ESTIMATED_KEY = f"{record.OBJECTIVE}_estimated"


# ---- the trainable (runs on the workers) --------------------------------------------------------

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
        context[ATTEMPT_KEY] = uuid.uuid4().hex
        t_budget = cfg.steps * cfg.dt
        last: dict[str, Any] = {}

        def report(metrics: dict[str, Any]) -> None:
            last.clear()
            last.update(metrics)
            value = metrics.get(cfg.converge_on)
            objective = record.time_to_eps(metrics["t"], value, cfg.eps, t_budget)
            estimated = value is None or not bool(record.converged(metrics["step"], value, cfg.eps))
            tune.report({**metrics, record.OBJECTIVE: objective, ESTIMATED_KEY: estimated, **context})

        summary = run_trial(cfg, report)
        scalars = {k: v for k, v in last.items() if k not in record.SPECTRUM_KEYS}
        tune.report({**scalars, record.OBJECTIVE: record.objective(summary, cfg.eps, t_budget, cfg.converge_on),
                     ESTIMATED_KEY: summary["status"] != record.CONVERGED, **context, SUMMARY_KEY: summary})

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
