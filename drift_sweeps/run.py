"""`python -m drift_sweeps.run [SPACE] [options]`: run a search space as a Ray Tune sweep, write Parquet.

Order of work: read and validate the space and every override (no Ray yet); with --dry-run stop
there; connect to Ray (the running cluster if there is one, else an embedded local Ray); write
the resolved spec next to the results; run the Tuner (or restore it with --resume); print the
comparison table and where the files are.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from . import results
from .ray_compat import last_cluster_address
from .config import ConfigError
from .spaces import SearchSpace, SpaceError, list_spaces, load_space, parse_overrides, spaces_dir

log = logging.getLogger("drift_sweeps")

DEFAULT_SPACE = "quickstart"
DEFAULT_RESULTS = "results/"
TUNE_DIR = "tune"  # Tune's own experiment state, inside the sweep folder
SPEC_FILE = "sweep.json"  # the resolved spec, written before training starts


def build_parser() -> argparse.ArgumentParser:
    """The CLI."""
    p = argparse.ArgumentParser(
        prog="python -m drift_sweeps.run",
        description="Run a search space (search_spaces/*.yaml) as a Ray Tune sweep; results go to Parquet.",
        epilog="Shipped spaces: " + (", ".join(list_spaces()) or "none found") + f" (in {spaces_dir()}).",
    )
    p.add_argument("space", nargs="?", default=None,
                   help=f"a shipped space name or a path to a .yaml file (default: {DEFAULT_SPACE})")
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help="results root, a local folder or an s3:// URI; the sweep goes to <results>/<name>/ "
                        "(default: %(default)s)")
    p.add_argument("--name", default=None, help="sweep (folder) name (default: the space's name; +'-smoke' with --smoke)")
    p.add_argument("--address", default=None,
                   help="Ray address to join ('auto': a running cluster, required; 'local': always start an "
                        "embedded Ray); default: join the running cluster if there is one, else start an embedded Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of an embedded Ray (default: all)")
    p.add_argument("--temp-dir", default=None, help="temp/log folder of an embedded Ray (default: Ray's, /tmp/ray)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="override the space's num_samples (grid/random: repeats; optuna: trials)")
    p.add_argument("--max-concurrent", type=int, default=None, help="cap on trials running at once")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractions allowed (default: the space's value when the cluster has "
                        "GPUs, else 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config key (value parsed as YAML); repeatable")
    p.add_argument("--smoke", action="store_true",
                   help="cap steps and sample counts for a quick look (results under <name>-smoke)")
    p.add_argument("--dry-run", action="store_true", help="validate, print the trial count and resources, run nothing")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    p.add_argument("--overwrite", action="store_true", help="delete an existing sweep folder of the same name first")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0,
                   help="Tune's own progress tables: 0 none (one line per finished trial and a progress line "
                        "every 30 s are always printed), 1 status tables, 2 every result (default 0)")
    return p


@dataclasses.dataclass
class Plan:
    """A validated sweep, ready to run."""

    space: SearchSpace
    name: str
    sweep_root: str
    max_concurrent: Optional[int]


def plan(args: argparse.Namespace) -> Plan:
    """Validate everything that can be validated without Ray."""
    if args.resume:
        for flag, given in (("--set", args.overrides), ("--num-samples", args.num_samples),
                            ("--overwrite", args.overwrite)):
            if given:
                raise SpaceError(f"{flag} cannot be combined with --resume: a resumed sweep keeps the spec it "
                                 f"recorded in {SPEC_FILE}")
        name = args.name or (load_space(args.space or DEFAULT_SPACE).name + ("-smoke" if args.smoke else ""))
        sweep_root = results.sweep_uri(args.results, name)
        record = results.read_json(sweep_root, SPEC_FILE)
        if record is None:
            raise SpaceError(f"--resume: no sweep to resume at {sweep_root} (no {SPEC_FILE}); run it without --resume")
        space = SearchSpace.from_dict(record["space"])
        return Plan(space, name, sweep_root, args.max_concurrent or space.max_concurrent)
    space = load_space(args.space or DEFAULT_SPACE)
    space = space.with_overrides(parse_overrides(args.overrides))
    if args.smoke:
        space = space.smoked()
    if args.num_samples is not None:
        space = space.with_num_samples(args.num_samples)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise SpaceError(f"--max-concurrent {args.max_concurrent}: must be >= 1")
    if args.gpus_per_trial is not None and (args.gpus_per_trial < 0 or (args.gpus_per_trial > 1 and
                                                                        args.gpus_per_trial != int(args.gpus_per_trial))):
        raise SpaceError(f"--gpus-per-trial {args.gpus_per_trial}: must be 0, a fraction in (0, 1] or a whole number")
    name = args.name or (space.name + ("-smoke" if args.smoke else ""))
    if not name or any(c in name for c in "/\\?# ") or name.startswith("."):
        raise SpaceError(f"--name {name!r}: not usable as a folder name")
    sweep_root = results.sweep_uri(args.results, name)
    if not args.dry_run and not args.overwrite and results.sweep_exists(sweep_root):
        done = len(results.trial_ids(sweep_root))
        raise SpaceError(f"{sweep_root} already holds a sweep ({done} trial(s) written): pass --resume to continue "
                         "it, --overwrite to replace it, or --name to write a new one")
    return Plan(space, name, sweep_root, args.max_concurrent or space.max_concurrent)


def describe(p: Plan) -> str:
    """What a sweep will run: the --dry-run report."""
    s = p.space
    factors = [f"{a.key}({len(a.values)})" for a in s.axes if a.kind == "grid"]
    if len(s.variants) > 1:
        factors.append(f"variants({len(s.variants)}: {', '.join(v.name for v in s.variants)})")
    if s.search != "optuna":
        formula = " x ".join(factors + ([f"num_samples {s.num_samples}"] if s.num_samples > 1 else [])) or "1"
    else:
        formula = f"num_samples {s.num_samples}"
    dists = [f"{a.key} ~ {a.kind}{list(a.values)}" for a in s.axes if a.kind != "grid"]
    lines = [
        f"{s.name} ({s.source}){': ' + s.description if s.description else ''}",
        f"{s.trial_count()} trials ({s.search} search: {formula})",
    ]
    if dists:
        lines.append("sampled: " + "; ".join(dists))
    lines += [
        f"resources per trial: {s.cpu:g} CPU, {s.gpu:g} GPU when the cluster has GPUs (override: --gpus-per-trial)",
        f"metric: {s.metric} ({s.mode}); scheduler: {s.scheduler['name'] if s.scheduler else 'none'}; "
        f"retries per trial: {s.max_failures}; max concurrent: {p.max_concurrent or 'as resources allow'}",
        f"base config: {json.dumps(dict(s.base), sort_keys=True)}" + (" (--smoke)" if s.smoke else ""),
        f"results: {p.sweep_root}/{{{','.join(results.TABLES)}}}/",
    ]
    return "\n".join(lines)


# ---- Ray ---------------------------------------------------------------------------------------------

def _running_cluster(temp_dir: Optional[str]) -> Optional[str]:
    """Address of a reachable running Ray cluster (RAY_ADDRESS or the last `ray start`), else None."""
    try:
        addr = last_cluster_address(temp_dir)
    except Exception as err:  # noqa: BLE001 - private API; any failure means "none found"
        log.debug("looking for a running Ray cluster failed: %s", err)
        return None
    if not addr or addr.startswith("ray://"):
        return addr
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return addr
    except (OSError, ValueError):
        log.warning("Ray: the last cluster address %s does not answer (stale); not joining it", addr)
        return None


def connect(args: argparse.Namespace) -> None:
    """Join a running cluster or start an embedded local Ray; the first output line says which."""
    import ray

    if ray.is_initialized():  # a notebook or test that called ray.init() itself: use that instance
        print("Ray: using the Ray instance this process already joined", flush=True)
        _print_resources()
        return
    address = args.address
    if address in (None, "auto"):
        found = _running_cluster(args.temp_dir)
        if found is None and address == "auto":
            raise SpaceError("--address auto: no running Ray cluster found (start one with `ray start --head` "
                             "or `ray up cluster.yaml`)")
        address = found
    if address and address != "local":
        print(f"Ray: joining the running cluster at {address}", flush=True)
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        cpus = args.num_cpus or os.cpu_count()
        print(f"Ray: no running cluster found; starting an embedded local Ray ({cpus} CPUs)"
              if args.address is None else f"Ray: starting an embedded local Ray ({cpus} CPUs)", flush=True)
        from .live import dashboard_available  # the dashboard starts when ray[default] is installed

        ray.init(num_cpus=cpus, _temp_dir=os.path.abspath(args.temp_dir) if args.temp_dir else None,
                 include_dashboard=dashboard_available(), logging_level=logging.WARNING)
    _print_resources()


def _print_resources() -> None:
    import ray

    res = ray.cluster_resources()
    print(f"Ray: {len([n for n in ray.nodes() if n.get('Alive')])} node(s), {res.get('CPU', 0):g} CPUs, "
          f"{res.get('GPU', 0):g} GPUs", flush=True)


def gpus_per_trial(space: SearchSpace, requested: Optional[float]) -> float:
    """The GPU share of a trial: the flag, else the space's value when the cluster has GPUs, else 0."""
    import ray

    res = ray.cluster_resources()
    has_gpus = res.get("GPU", 0) > 0
    if requested is not None:
        if requested > 0 and not has_gpus:
            log.warning("--gpus-per-trial %g but the cluster has no GPUs now: trials wait for GPU nodes "
                        "(an autoscaler may add them)", requested)
        return requested
    if not has_gpus and res.get("CPU", 0) == 0:
        log.warning("the cluster has no CPUs or GPUs yet (autoscaling from zero?); trials ask for CPUs only. "
                    "Pass --gpus-per-trial to have GPU nodes started for them")
    return space.gpu if has_gpus else 0.0


# ---- provenance ---------------------------------------------------------------------------------------

def git_commit() -> Optional[str]:
    """HEAD of the checkout the package runs from ('+dirty' with uncommitted changes), None outside git."""
    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def driver_versions() -> str:
    """JSON of the driver's package versions (workers report their own with each trial)."""
    import optuna
    import pandas
    import pyarrow

    from .tune_adapter import versions

    return json.dumps({**json.loads(versions()), "optuna": optuna.__version__, "pandas": pandas.__version__,
                       "pyarrow": pyarrow.__version__}, sort_keys=True)


# ---- the sweep --------------------------------------------------------------------------------------

def storage(sweep_root: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Tune: a pyarrow filesystem object for s3://, None locally."""
    fs, path = results.resolve(sweep_root)
    return (path, fs) if "://" in sweep_root else (path, None)


def run_sweep(p: Plan, args: argparse.Namespace) -> int:
    """Run (or resume) the Tuner of a plan; returns the exit code."""
    from ray import tune

    from . import live
    from .progress import ProgressReporter
    from .record import CURVE_METRICS
    from .ray_compat import restored_run_config
    from .tune_adapter import make_trainable, param_space, scheduler, search_alg
    from .writer import ResultsWriter

    space = p.space
    path, fs = storage(p.sweep_root)
    tune_path = f"{path}/{TUNE_DIR}"
    commit, versions = git_commit(), driver_versions()
    gpu = gpus_per_trial(space, args.gpus_per_trial)
    trainable = tune.with_resources(make_trainable(space), {"cpu": space.cpu, "gpu": gpu})

    restore = False
    if args.resume:
        restore = tune.Tuner.can_restore(tune_path, storage_filesystem=fs)
        if not restore:
            removed = results.remove_trials(p.sweep_root, lambda tid: True)
            log.warning("--resume: Tune saved no state before the interruption; starting %s over "
                        "(%d partial trial file set(s) removed)", p.name, len(removed))
    elif args.overwrite and results.sweep_exists(p.sweep_root):
        log.info("--overwrite: deleting the previous sweep at %s", p.sweep_root)
        results.remove_sweep(p.sweep_root)

    if not args.resume:
        results.write_json(p.sweep_root, SPEC_FILE, {
            "schema_version": results.SCHEMA_VERSION, "sweep": p.name, "space": space.to_dict(),
            "trial_count": space.trial_count(), "resources_per_trial": {"cpu": space.cpu, "gpu": gpu},
            "results": p.sweep_root, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": commit, "versions": json.loads(versions), "command": sys.argv,
            "trial_configs": space.trial_configs(),
        })
    print(f"sweep {p.name}: {space.trial_count()} trials, {space.cpu:g} CPU + {gpu:g} GPU each, "
          f"{'resuming' if args.resume else 'results'} in {p.sweep_root}", flush=True)
    optuna_db = live.optuna_storage_url(p.sweep_root) if space.search == "optuna" else None
    for line in live.live_lines(p.sweep_root, live.dashboard_url(), optuna_db):
        print(line, flush=True)

    progress = ProgressReporter(space.trial_count(), metric=space.metric, mode=space.mode)
    callbacks = [ResultsWriter(space, p.name, p.sweep_root, commit, versions, progress), progress]
    if live.tensorboard_dir(p.sweep_root):
        callbacks.append(live.TensorBoardWriter(live.tensorboard_dir(p.sweep_root),
                                                [m for m in CURVE_METRICS if m != "step"] + [space.metric]))
    if restore:
        tuner = tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                   param_space=param_space(space), storage_filesystem=fs)
        run_config = restored_run_config(tuner)
        if run_config is not None:
            # Tune restores the RunConfig pickled when the sweep started, callbacks included; rows written
            # from now on should carry this run's git commit and versions, so use fresh callbacks.
            run_config.callbacks = callbacks
            run_config.verbose = args.verbose
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(space),
            tune_config=tune.TuneConfig(
                metric=space.metric, mode=space.mode, scheduler=scheduler(space),
                search_alg=search_alg(space, live.optuna_storage(p.sweep_root) if optuna_db else None, p.name),
                num_samples=space.num_samples, max_concurrent_trials=p.max_concurrent, reuse_actors=True,
                trial_dirname_creator=lambda trial: trial.trial_id,
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=path, storage_filesystem=fs, callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=space.max_failures), verbose=args.verbose,
            ),
        )
    grid = tuner.fit()
    return report(p, grid)


def report(p: Plan, grid: Any) -> int:
    """After fit: best trial, the comparison table, where the files are; exit code 130 if interrupted."""
    space = p.space
    unfinished = len(grid) - grid.num_terminated - grid.num_errors
    try:
        best = grid.get_best_result(metric=space.metric, mode=space.mode, scope="last")
        value = best.metrics.get(space.metric)
        print(f"\nbest trial: {best.metrics.get('trial_id')}  {space.metric} = {value:.4g}  "
              f"params: {json.dumps(best.config, default=str, sort_keys=True)}")
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        log.warning("no best trial: %s", err)
    print()
    try:
        from analysis.headline import format_markdown, headline_table

        print(format_markdown(headline_table(p.sweep_root)))
    except ImportError as err:
        log.warning("comparison table unavailable (analysis package not importable: %s)", err)
    except Exception as err:  # noqa: BLE001 - the sweep's files are written; a table failure must not hide that
        log.error("comparison table failed: %s: %s", type(err).__name__, err)
    n = {t: len(results.trial_ids(p.sweep_root, t)) for t in results.TABLES}
    print(f"\nParquet results ({n['trials']} trials): {p.sweep_root}/{{{','.join(results.TABLES)}}}/ "
          f"- e.g. pandas.read_parquet('{results.table_uri(p.sweep_root, 'trials')}')")
    print(f"spec and trial configs: {p.sweep_root}/{SPEC_FILE}, {p.sweep_root}/configs/")
    if unfinished:
        print(f"interrupted: {unfinished} trial(s) unfinished; continue with --resume", flush=True)
        return 130
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    _setup_logging()
    try:
        p = plan(args)
    except (SpaceError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe(p))
        return 0
    import ray

    joined_here = not ray.is_initialized()
    try:
        connect(args)
        return run_sweep(p, args)
    except (SpaceError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if joined_here and ray.is_initialized():
            ray.shutdown()  # stops an embedded Ray; only disconnects from a cluster


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (pytest and notebooks swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def _setup_logging() -> None:
    if log.handlers:
        return
    handler = _StdoutHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


if __name__ == "__main__":
    sys.exit(main())
