"""The driver's Ray: join the running cluster or start an embedded local Ray, and what it can give a trial.

Ray is imported inside the functions: the CLI imports this module without starting or loading Ray.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Optional

from ..spaces import SearchSpace, SpaceError
from .ray_compat import last_cluster_address

log = logging.getLogger("drift_sweeps")


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


def connect(address: Optional[str], temp_dir: Optional[str] = None, num_cpus: Optional[int] = None) -> bool:
    """Join a running cluster or start an embedded local Ray; the first output line says which.  True when
    this process started an embedded Ray (which then stops with it: the caller starts its watchdog)."""
    import ray

    if ray.is_initialized():  # a notebook or test that called ray.init() itself: use that instance
        print("Ray: using the Ray instance this process already joined", flush=True)
        print_resources()
        return False
    found: Optional[str] = None
    target = address
    if address in (None, "auto"):
        found = _running_cluster(temp_dir)
        if found is None and address == "auto":
            raise SpaceError("--address auto: no running Ray cluster found (start one with `ray start --head` "
                             "or `ray up cluster.yaml`)")
        target = found
    if target and target != "local":
        if not target.startswith("ray://") and target != found:
            _check_answers(target)
        print(f"Ray: joining the running cluster at {target}", flush=True)
        # a discovered cluster is joined as "auto": only then does Ray take its token from ~/.ray/auth_token
        discovered = target == found and address in (None, "auto") and temp_dir is None
        ray.init(address="auto" if discovered else target, logging_level=logging.WARNING)
        print_resources()
        return False
    _start_embedded(num_cpus or os.cpu_count(), temp_dir, announce_search=address is None)
    print_resources()
    return True


def _start_embedded(cpus: Optional[int], temp_dir: Optional[str], announce_search: bool) -> None:
    import ray

    from .live import dashboard_available  # the dashboard starts when ray[default] is installed

    print(f"Ray: no running cluster found; starting an embedded local Ray ({cpus} CPUs)"
          if announce_search else f"Ray: starting an embedded local Ray ({cpus} CPUs)", flush=True)
    # Ray turns token authentication on for a local cluster by default and says so on every start;
    # that is the behaviour we want, so the notice is not repeated to the user
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    # Ray would start a worker process per CPU for the driver's first tasks; a sweep's trials run in Tune's
    # actors, which start processes of their own, so those workers only took CPU from the start (a quickstart
    # --smoke sweep: 21.6-22.5 s with them, 19.3-20.8 s without, on 2 cores)
    ray.init(num_cpus=cpus, _temp_dir=os.path.abspath(temp_dir) if temp_dir else None,
             include_dashboard=dashboard_available(), logging_level=logging.WARNING,
             _system_config={"prestart_worker_first_driver": False})


def _check_answers(address: str) -> None:
    """A HOST:PORT given with --address must answer before Ray is asked to join it (else Ray retries for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3.0):
            return
    except (OSError, ValueError) as err:
        raise SpaceError(f"--address {address}: nothing answers there ({getattr(err, 'strerror', None) or err}); "
                         "is the cluster running?") from None


def check_resources(space: SearchSpace, gpu: float, embedded: bool) -> None:
    """A trial must fit on one node: an embedded Ray can never grow, so asking for more is an error there;
    a cluster may autoscale, so there it is a warning."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if space.cpu <= cpus and gpu <= gpus:
        return
    msg = (f"a trial needs {space.cpu:g} CPU + {gpu:g} GPU on one node, but the largest Ray node has {cpus:g} CPUs "
           f"and {gpus:g} GPUs")
    if embedded:
        raise SpaceError(f"{msg}: no trial could ever start on this embedded Ray; lower resources.cpu / "
                         "--gpus-per-trial, or give it more with --num-cpus")
    if cpus > 0:
        log.warning("%s: trials wait until a larger node joins (an autoscaler may add one)", msg)


def print_resources() -> None:
    """One line: the nodes, CPUs and GPUs of the Ray this process joined."""
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
