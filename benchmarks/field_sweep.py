"""`python -m benchmarks.field --sweep`: a search space's trials back to back, then through Tune."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from .field_case import SCHEMA, machine_info
from .field_grid import _load


def run_sweep_comparison(args: argparse.Namespace) -> dict[str, Any]:
    """The quickstart's trials back to back in this process, then through Tune on a local Ray."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import torch

    from drift_sweeps.spine.config import TrialConfig
    from drift_sweeps.spaces import load_space
    from drift_sweeps.trial import run_trial

    space = load_space(args.space)
    configs = space.trial_configs()
    if not configs:
        raise SystemExit(f"--sweep: space {args.space!r} is not a grid search; nothing to run back to back")
    cpus = args.num_cpus or os.cpu_count() or 1
    slots = max(1, min(len(configs), int(cpus // max(space.cpu, 1e-9))))
    load_before = os.getloadavg()

    torch.set_num_threads(max(1, int(space.cpu)))  # as the Tune trainable does
    t0 = time.perf_counter()
    statuses = []
    for raw in configs:
        statuses.append(run_trial(TrialConfig.from_dict(raw))["status"])
    sequential_s = time.perf_counter() - t0

    import ray

    from drift_sweeps import run as sweep_cli

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        # a short folder of its own: unix socket paths must stay < 108 chars
        ray_tmp = args.ray_temp_dir or tempfile.mkdtemp(prefix="rt", dir="/tmp")
        t1 = time.perf_counter()
        ray.init(num_cpus=cpus, _temp_dir=os.path.abspath(ray_tmp), include_dashboard=False,
                 object_store_memory=256 * 2**20, logging_level="WARNING")
        init_s = time.perf_counter() - t1
        try:
            t2 = time.perf_counter()
            code = sweep_cli.main([args.space, "--results", os.path.join(tmp, "results"), "--name", "bench-sweep",
                                   "--overwrite"])
            tune_s = time.perf_counter() - t2
        finally:
            ray.shutdown()
            if not args.ray_temp_dir:
                shutil.rmtree(ray_tmp, ignore_errors=True)
    out = {
        "schema": SCHEMA, "mode": "sweep", "space": args.space, "trials": len(configs),
        "statuses": statuses, "cpus": cpus, "cpu_per_trial": space.cpu, "parallel_slots": slots,
        "sequential_wall_s": sequential_s, "ray_init_s": init_s, "tune_wall_s": tune_s, "tune_exit_code": code,
        "ratio": tune_s * slots / sequential_s,
        "ratio_with_ray_init": (tune_s + init_s) * slots / sequential_s,
        "machine": machine_info("cpu", max(1, int(space.cpu)), load_before),
        "command": [sys.executable, "-m", "benchmarks.field", *args.argv],
    }
    return out


def format_sweep(r: dict[str, Any]) -> str:
    """The --sweep summary lines."""
    return "\n".join([
        f"space {r['space']}: {r['trials']} trials, {r['cpu_per_trial']:g} CPU each, {r['parallel_slots']} parallel slots "
        f"on {r['cpus']} CPUs",
        f"sequential (one process, back to back): {r['sequential_wall_s']:.1f} s",
        f"through Tune (local Ray, reuse_actors): {r['tune_wall_s']:.1f} s (+ ray.init {r['ray_init_s']:.1f} s)",
        f"Tune wall x slots / sequential = {r['ratio']:.2f} ({r['ratio_with_ray_init']:.2f} counting ray.init)",
        f"load average before {_load(r['machine']['load_avg_before'])}, after {_load(r['machine']['load_avg_after'])}",
    ])
