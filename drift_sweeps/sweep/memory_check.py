"""A sweep whose trials cannot fit in the node's memory is refused before Ray (spine/memory.py's lower bound).

Checked where the node is known before Ray: a --serial sweep and an embedded Ray run on this machine, whose
memory is its physical memory or its cgroup's limit, whichever is smaller.  Not checked: a cluster joined
by address (its nodes are known only once joined), and trials that may run on a GPU (their tensors live in
the GPU's memory).  No torch.
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Any, Iterator, Optional

from ..spaces import VARIANT_PARAM, SearchSpace, SpaceError
from ..spine.memory import gib, peak_bytes, peak_parts

# the config keys the estimate reads: their axes are crossed at their corners, the others held at their first
_MEMORY_KEYS = ("n_eval", "n_samples", "n_data", "n_neg", "dim", "target", "stop_gradient", "operator",
                "metrics", "converge_on", "device")
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def node_memory_bytes() -> Optional[int]:
    """This machine's memory for one process: MemTotal, or the cgroup's limit when lower; None if unknown."""
    total: Optional[int] = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):  # "max", or v1's "no limit" (a huge number)
            total = int(text) if total is None else min(total, int(text))
    return total


def _gpu_here() -> bool:
    """Whether this machine shows an NVIDIA GPU (without importing torch)."""
    try:
        return bool(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return os.path.exists("/dev/nvidia0")


def memory_configs(space: SearchSpace) -> Iterator[tuple[dict[str, Any], Any]]:
    """(params, resolved config) over the corners of the axes the estimate reads, for every variant."""
    swept = [a for a in space.axes if a.key in _MEMORY_KEYS]
    first = {a.key: a.corners()[0] for a in space.axes if a.key not in _MEMORY_KEYS}
    variants = [v.name for v in space.variants] if len(space.variants) > 1 else [None]
    for combo in itertools.product(*[a.corners() for a in swept]):
        for variant in variants:
            params = {**first, **{a.key: v for a, v in zip(swept, combo)}}
            if variant is not None:
                params[VARIANT_PARAM] = variant
            yield params, space.resolve(params, where="")


def runs_here(args: argparse.Namespace) -> bool:
    """Whether the trials run on this machine: --serial, --address local, or no address and no cluster."""
    if getattr(args, "serial", False) or getattr(args, "address", None) == "local":
        return True
    if getattr(args, "address", None) is not None or os.environ.get("RAY_ADDRESS"):
        return False
    from ..tune.session import _running_cluster

    return _running_cluster(getattr(args, "temp_dir", None)) is None


def check_trial_memory(space: SearchSpace, args: argparse.Namespace, node_bytes: Optional[int] = None) -> None:
    """SpaceError (one line: the estimate, its largest part, the trial, the node's memory) for the first trial
    whose lower-bound peak exceeds this node's memory (`node_bytes`, else this machine's when the trials run
    here), on its CPU."""
    here = node_bytes is None
    node_bytes = node_memory_bytes() if here else node_bytes
    if node_bytes is None:
        return
    # device auto takes a GPU when this machine has one and the trial may use it (serial: always; under Ray:
    # when it asks for a GPU share, which an embedded Ray grants only where there are GPUs)
    gpu_asked = getattr(args, "serial", False) or space.gpu > 0 or (getattr(args, "gpus_per_trial", None) or 0) > 0
    gpu_auto = gpu_asked and _gpu_here()
    for params, cfg in memory_configs(space):
        if cfg.device == "cuda" or (cfg.device == "auto" and gpu_auto):
            continue  # its tensors live on a GPU: not this check's memory
        need = peak_bytes(cfg)
        if need > node_bytes and (not here or runs_here(args)):  # (where the trials run is asked only now)
            raise SpaceError(_refusal(space, params, cfg, need, node_bytes))


def _refusal(space: SearchSpace, params: dict[str, Any], cfg: Any, need: int, node_bytes: int) -> str:
    parts = peak_parts(cfg)
    part = max(("evaluation", "dense_field"), key=lambda k: parts[k])
    what = {"evaluation": f"the evaluation's pairwise distances of n_eval = {cfg.n_eval}",
            "dense_field": f"the dense field of stop_gradient = false at n_samples = {cfg.n_samples}, "
                           f"n_data = {cfg.n_data}"}[part]
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k in _MEMORY_KEYS or k == VARIANT_PARAM)
    return (f"{space.source}: a trial ({shown or 'the base config'}) needs at least {gib(need)} of memory ({what}: "
            f"{gib(parts[part])}), more than this node's {gib(node_bytes)}; lower n_eval / n_samples or run it on "
            "a larger node")
