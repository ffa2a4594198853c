"""The Tune runner: a planned sweep's missing trials as one Tuner on the Ray this driver joins or starts.

A resume never loads Tune's experiment state (`tune/tuner.pkl` and friends are pickles: whoever can write
the results folder could run code through them).  It builds a fresh Tuner from the recorded, validated
spec (`sweep.json`, plain JSON) and the finished trials' rows: grid sweeps run exactly the grid points
without a row (`identity.missing_points`, shared with the serial runner); random sweeps draw the missing
samples anew; Optuna continues its study.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
from typing import Any, Mapping, Optional

from ..spaces import SearchSpace
from ..tune import ray_compat, session
from . import watchdog
from .folder import TUNE_DIR, StorageError, storage_cause
from .identity import grid_part, missing_points
from .packing import PACK_PARAM, make_packs
from .plan import Plan, spec_record
from .provenance import driver_versions, git_commit
from .report import report
from .runner import Runner
from .signals import Interrupts

log = logging.getLogger("drift_sweeps")

# Tune's default loggers (CSV, JSON, TensorBoard files per trial under <sweep>/tune/) keep per-trial state on
# the driver, whose memory then grows with the trials (ray-project/ray#64231).  Never added by Tune: the CSV and
# JSON ones (what Tune's own view reads, docs/live.md) are ours to add, up to LARGE_SWEEP_TRIALS; its TensorBoard
# one never (a copy of our live view, `live.TensorBoardWriter`, at ~20 ms of the driver per report).  Our
# Parquet rows are the record.
LOGGERS_OFF = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}

# Rounds of trials that Tune ended before they ran (writer.lost_before_start); what is still missing after
# them is left to --resume, as after an interrupt
LOST_ROUNDS = 3

# Trials per Tuner of a large sweep (`in_rounds`): Tune keeps every trial's state on the driver until its fit
# returns, ~75 MB per 1000 finished trials (docs/benchmarks.md); a new Tuner per round frees it, at the cost of
# starting Tune and the trial actors again (a few seconds)
ROUND_TRIALS = 2000


class TuneRunner(Runner):
    """The trials on Ray Tune: joins the running cluster or starts an embedded Ray (stopped by `close`)."""

    def __init__(self) -> None:
        self._joined_here = False
        self._kept_at_start = 0  # finished trials when this run began (the rounds' progress counts from there)
        self._folder: Optional[Any] = None  # the sweep folder, cleaned again once the trials' processes are gone

    def run(self, p: Plan, args: argparse.Namespace, interrupts: Interrupts) -> int:
        """Connect, prepare the folder, fit the Tuner of the missing trials, report."""
        import ray

        self._joined_here = not ray.is_initialized()
        self._folder = p.folder
        embedded = session.connect(args.address, temp_dir=args.temp_dir, num_cpus=args.num_cpus)
        if embedded:
            watchdog.start(os.getpid())
        interrupts.arm()  # again: ray.init installs a SIGTERM handler of its own
        return self._sweep(p, args, interrupts, embedded=bool(embedded) and self._joined_here)

    def close(self) -> None:
        """Stop an embedded Ray (only disconnect from a cluster) that `run` joined."""
        import sys

        ray = sys.modules.get("ray")
        if self._joined_here and ray is not None and ray.is_initialized():
            ray.shutdown()
        if self._folder is not None:  # a trial stopped by an interrupt may have written its curves after the
            try:  # end-of-sweep cleanup, before Ray stopped its process
                self._folder.discard_unfinished(quiet=True)  # after the sweep's last line
            except OSError as err:  # the storage is failing: the resume removes what is partial
                log.debug("%s: partial files not removed (%s)", self._folder.root, err)

    def _sweep(self, p: Plan, args: argparse.Namespace, interrupts: Interrupts, embedded: bool) -> int:
        """The missing trials in rounds of Tuners: again those Tune ended before they started (up to
        LOST_ROUNDS times), and a large grid or random sweep ROUND_TRIALS at a time."""
        lost_rounds, previous = 0, None
        while True:
            outcome = self._round(p, args, interrupts, embedded, previous, lost_rounds < LOST_ROUNDS)
            if isinstance(outcome, int):
                return outcome
            lost_rounds += outcome == "lost"
            p, previous = dataclasses.replace(p, mode="resume"), previous or outcome

    def _round(self, p: Plan, args: argparse.Namespace, interrupts: Interrupts, embedded: bool,
               previous: Optional[str], rerun_lost: bool) -> "int | str":
        """One Tuner of (up to ROUND_TRIALS of) the missing trials -> the exit code, or why to run another
        round: "lost" (trials Tune ended before they started) or "more" (the sweep's next round); `previous`:
        None in the first round, else the first round's reason for another."""
        from ray import tune

        from ..tune import live

        space = p.space
        gpu = session.gpus_per_trial(space, args.gpus_per_trial)
        session.check_resources(space, gpu, embedded)
        commit, versions = git_commit(), driver_versions()
        kept = p.folder.prepare(p.mode == "resume", args.overwrite, spec_record(p, gpu, commit, versions))
        optuna_db = live.optuna_storage_url(p.sweep_root) if space.search == "optuna" else None
        limit = ROUND_TRIALS if in_rounds(space) else None
        todo_params, points, searcher, left = space_for_run(space, kept, p, optuna_db, limit)
        if previous is None:
            self._kept_at_start = len(kept)
            print(f"sweep {p.name}: {space.trial_count()} trials, {space.cpu:g} CPU + {gpu:g} GPU each, "
                  + (f"resuming ({len(kept)} finished, {points + left} to run)" if p.mode == "resume" else "results")
                  + f" in {p.sweep_root}", flush=True)
            for line in live.live_lines(p.sweep_root, live.dashboard_url(), optuna_db):
                print(line, flush=True)
        if left or previous == "more":
            print(f"round of trials {len(kept) + 1}-{len(kept) + points} of {space.trial_count()} (one Tuner per "
                  f"{ROUND_TRIALS} trials: Tune's driver-side state is freed after each)", flush=True)
        if points == 0:
            return report(p, args)
        packs = make_packs(space, [params for _, params in missing_points(space, kept)]) if space.pack > 1 else None
        if packs is not None:
            todo_params, searcher = {PACK_PARAM: tune.grid_search(list(range(len(packs))))}, None
            points = sum(len(pack) for pack in packs)
            print(f"{points} trials in {len(packs)} packs of up to {space.pack} configurations", flush=True)
        tuner, writer = _tuner(p, args, gpu, todo_params, (points, left, len(kept) - self._kept_at_start), searcher,
                               kept, (commit, versions), packs)
        interrupts.on_first = writer.stop_recording
        try:
            grid = _fit(tuner, args.verbose, interrupts)
        except OSError:
            grid = None  # a failed write of ours (raised below), or of Tune's own state in the folder
            if writer.failure is None:
                raise
        if writer.failure is not None:
            self._folder = None  # the storage is failing: the resume removes what is partial
            raise StorageError(str(writer.failure)) from None
        if interrupts.signame is None and writer.lost and rerun_lost:
            print(f"{len(writer.lost)} trial(s) lost their node before they started; running them again", flush=True)
            return "lost"
        if interrupts.signame is None and left:
            return "more"
        if space.pack > 1:
            print(f"\n{writer.progress.best_text()}" if writer.progress else "")
        elif previous != "more":  # Tune's view of one round is not the sweep's
            print_best(grid, space)
        return report(p, args, interrupts.signame)


def in_rounds(space: SearchSpace) -> bool:
    """Whether a sweep runs as rounds of ROUND_TRIALS: grid and random sweeps, unpacked, without a scheduler
    (ASHA compares a trial with every trial of its Tuner; Optuna's searcher is the study)."""
    return space.search in ("grid", "random") and not space.scheduler and space.pack <= 1


def _tuner(p: Plan, args: argparse.Namespace, gpu: float, todo_params: dict[str, Any], counts: tuple[int, int, int],
           searcher: Any, kept: Mapping[str, Any], provenance: tuple[Optional[str], str],
           packs: Optional[list[list[dict[str, Any]]]] = None) -> tuple[Any, Any]:
    """(Tuner, results writer) of the trials to run (packed trials when `packs` is given); `counts`: (this
    Tuner's trials, trials left for later rounds, trials finished by this run's earlier rounds)."""
    from ray import tune

    from ..spine.record import CURVE_METRICS
    from ..tune import live
    from ..tune.adapter import LARGE_SWEEP_TRIALS, make_packed_trainable, make_trainable, scheduler
    from ..tune.pack_writer import PackWriter
    from ..tune.progress import ProgressReporter
    from ..tune.writer import ResultsWriter

    space = p.space
    path, fs = p.folder.storage()
    store = p.folder.curve_files()
    function = make_trainable(space, store) if packs is None else make_packed_trainable(space, packs, store)
    trainable = tune.with_resources(function, {"cpu": space.cpu, "gpu": gpu})
    points, left, before = counts
    progress = ProgressReporter(points + left, metric=space.metric, mode=space.mode, counts_trials=packs is None,
                                converge_on=space.base.get("converge_on", "worst_rel_error"), before=before)
    writer = (ResultsWriter(space, p.name, p.folder, *provenance, progress, keep=set(kept)) if packs is None else
              PackWriter(space, p.name, p.folder, *provenance, progress, keep=set(kept), packs=packs))
    callbacks = [writer, progress]
    if space.trial_count() <= LARGE_SWEEP_TRIALS:  # Tune's own view (LOGGERS_OFF)
        from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

        callbacks += [CSVLoggerCallback(), JsonLoggerCallback()]
    tensorboard = live.tensorboard_dir(p.sweep_root)
    if tensorboard:
        metrics = [m for m in CURVE_METRICS if m != "step"] + [space.metric]
        callbacks.append(live.TensorBoardWriter(tensorboard, metrics))
    tuner = tune.Tuner(
        trainable,
        param_space=todo_params,
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, scheduler=scheduler(space), search_alg=searcher,
            num_samples=points if packs is None else 1, max_concurrent_trials=p.max_concurrent, reuse_actors=True,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=path, storage_filesystem=fs, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=space.max_failures), verbose=args.verbose,
        ),
    )
    return tuner, writer


def _fit(tuner: Any, verbose: int, interrupts: Interrupts) -> Any:
    """tuner.fit() with our SIGINT/SIGTERM handling forwarded to Tune's own."""
    # --verbose 0: our own progress lines only (Tune's new output prints a configuration box and a
    # TensorBoard hint pointing at a temporary folder even when silent; its legacy reporter does not)
    quiet = {"RAY_AIR_NEW_OUTPUT": "0"} if verbose == 0 and "RAY_AIR_NEW_OUTPUT" not in os.environ else {}
    quiet.update({k: v for k, v in LOGGERS_OFF.items() if k not in os.environ})
    os.environ.update(quiet)
    ray_compat.tensorboardx_without_torch()  # before Tune's loggers or ours import it
    ray_compat.one_line_storage_errors(storage_cause)
    interrupts.in_fit = True
    # fit() ends by reading Tune's per-trial result files, which its loggers (when on) write
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)
    try:
        return tuner.fit()
    finally:
        analysis_log.setLevel(level)
        for key in quiet:
            os.environ.pop(key, None)
        interrupts.in_fit = False


def print_best(grid: Any, space: SearchSpace) -> None:
    """The best trial's id, metric and parameters (Tune's view of the sweep)."""
    try:
        best = grid.get_best_result(metric=space.metric, mode=space.mode, scope="last")
        value = best.metrics.get(space.metric)
        print(f"\nbest trial: {best.metrics.get('trial_id')}  {space.metric} = {value:.4g}  "
              f"params: {json.dumps(best.config, default=str, sort_keys=True)}")
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        log.warning("no best trial: %s", err)


def space_for_run(space: SearchSpace, kept: Mapping[str, Mapping[str, Any]], p: Plan,
                  optuna_db: Optional[str], limit: Optional[int] = None) -> tuple[dict[str, Any], int, Any, int]:
    """(param_space, num_samples, search_alg, left) of the trials of this Tuner: all of them, or at most
    `limit` of a grid or random sweep, `left` missing after them.

    Fresh sweep: the space as is (the first `limit` grid points as presets when the sweep has more).  Resume: grid/random presets (the grid points, each as often as it still
    lacks a row) over a param_space of choices, so every preset trial takes exactly its point; Optuna: the
    study continues (the SQLite study in a local sweep folder, else one told the finished trials' results).
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from ..tune import live
    from ..tune.adapter import param_space, search_alg

    fresh = not kept and p.mode != "resume"
    if fresh and (limit is None or space.trial_count() <= limit):
        return param_space(space), space.num_samples, search_alg(
            space, live.optuna_storage(p.sweep_root) if optuna_db else None, p.name), 0
    if space.search == "optuna":
        todo = max(0, space.num_samples - len(kept))
        if optuna_db:
            return param_space(space), todo, search_alg(space, live.optuna_storage(p.sweep_root), p.name), 0
        return param_space(space), todo, _warm_optuna(space, kept), 0
    presets = [grid_part(space, params) for _, params in missing_points(space, kept)]
    left = max(0, len(presets) - limit) if limit is not None else 0
    presets = presets[:len(presets) - left]
    choices: dict[str, Any] = {}
    for a in space.axes:
        choices[a.key] = tune.choice(list(a.values)) if a.kind == "grid" else param_space(space)[a.key]
    if len(space.variants) > 1:
        choices["variant"] = tune.choice([v.name for v in space.variants])
    searcher = BasicVariantGenerator(points_to_evaluate=presets or None, random_state=space.seed + len(kept))
    return choices, len(presets), searcher, left


def _warm_optuna(space: SearchSpace, kept: Mapping[str, Mapping[str, Any]]) -> Any:
    """A fresh TPE searcher told the finished trials' parameters and results."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    rows = [r for r in kept.values() if math.isfinite(_objective(space, r))]
    points = [{a.key: r[a.key] for a in space.axes} for r in rows]
    return OptunaSearch(metric=space.metric, mode=space.mode, sampler=optuna.samplers.TPESampler(seed=space.seed),
                        points_to_evaluate=points or None,
                        evaluated_rewards=[_objective(space, r) for r in rows] or None)


def _objective(space: SearchSpace, row: Mapping[str, Any]) -> float:
    """The searcher's value of a finished trial's row (what Optuna is told on resume)."""
    from ..spine import record
    from ..spine.metrics import DEFAULT_CONVERGE_ON

    if space.metric == record.OBJECTIVE:
        value = record.objective(row, row["eps"], row["steps"] * row["dt"],
                                 row.get("converge_on") or DEFAULT_CONVERGE_ON)
    else:
        value = row.get(record.FINAL_PREFIX + space.metric)
    return float(value) if isinstance(value, (int, float)) else math.nan
