"""One benchmark case of `python -m benchmarks.field`: inputs, timing, peak memory, the machine.

A case is an operator x kernel x size x backend x bandwidth, with a fixed bandwidth or an
annealed one (a new bandwidth at every call, as an annealed trial asks for: every per-bandwidth
cache, the spectral plans and coefficient tables, is cold at each timed call).  `run_case` times
it in this process; `run_case_subprocess` in a fresh interpreter (clean peak memory).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

SCHEMA = "benchmarks.field/3"
LIMIT_EXP_ELEMS = 1 << 25  # exp() limit: in-place exp over a 128 MiB float32 buffer
ANNEAL_STEP = 1e-5  # annealed cases: call i (counted over the process) runs at h (1 - ANNEAL_STEP i): always a new h
_ANNEAL_CALLS = itertools.count(1)
CASE_KEYS = ("operator", "kernel", "n", "m", "dim", "periodic", "backend", "status", "reason", "time_s",
             "times_s", "pairs", "pairs_per_s", "peak_mem_bytes", "memory_method", "bandwidth", "images",
             "limit_s", "frac_of_limit", "speedup_vs_dense", "speedup_vs_stream", "speedup_vs_stream3", "plan",
             "schedule", "auto_vs_best")


@dataclasses.dataclass(frozen=True)
class Size:
    """One grid point: N points, M data samples, dimension, plane or torus."""

    n: int
    m: int
    dim: int
    periodic: bool = False

    @classmethod
    def parse(cls, text: str) -> "Size":
        """'4096x4096x2' or '1024x1024x1t'."""
        raw = text.strip().lower()
        periodic = raw.endswith("t")
        parts = raw.rstrip("t").split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"size {text!r}: expected NxMxD with positive integers, e.g. 4096x4096x2")
        return cls(int(parts[0]), int(parts[1]), int(parts[2]), periodic)

    def label(self) -> str:
        return f"{self.n}x{self.m}x{self.dim}{'t' if self.periodic else ''}"

    def pairs(self) -> int:
        """Kernel values per evaluation: N M with the data, N N with the negatives (= x)."""
        return self.n * (self.m + self.n)


@dataclasses.dataclass(frozen=True)
class Case:
    """One timing: an operator, a kernel, a size, a backend."""

    operator: str
    kernel: str
    size: Size
    backend: str
    bandwidth: float
    sinkhorn_iters: int
    device: str
    threads: int
    repeats: int
    budget_s: float  # stop repeating once this much time was spent
    seed: int = 0
    annealed: bool = False  # a new bandwidth at every call (ANNEAL_STEP)


# ---------------------------------------------------------------------------- machine limits


def _timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine_limits(device: str, repeats: int = 5, exp_elems: int = LIMIT_EXP_ELEMS) -> dict[str, Any]:
    """exp() and matmul throughput on this device with the current torch thread count."""
    import torch

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    buf = torch.rand(exp_elems, device=dev).neg_()

    def run_exp() -> None:
        torch.exp(buf, out=buf)
        buf.neg_()  # keep the values in (-1, 0]: no overflow, no denormals
        sync()

    def run_exp2() -> None:
        torch.exp2(buf, out=buf)
        buf.neg_()
        sync()

    t_exp = _timed(run_exp, repeats)
    t_exp2 = _timed(run_exp2, repeats)
    t_neg = _timed(lambda: (buf.neg_(), buf.neg_(), sync()), repeats) / 2  # the neg_ pass, subtracted
    exp_per_s = exp_elems / max(t_exp - t_neg, 1e-9)
    n = 2048 if dev.type == "cpu" else 8192
    a = torch.randn(n, n, device=dev)
    t_mm = _timed(lambda: (a @ a, sync()), max(2, repeats // 2))
    return {
        "exp_per_s": exp_per_s,
        "exp_method": f"in-place torch.exp over {exp_elems} float32 values (minus one neg_ pass), best of {repeats}",
        "exp2_per_s": exp_elems / max(t_exp2 - t_neg, 1e-9),
        "matmul_flops": 2.0 * n**3 / t_mm,
        "matmul_method": f"float32 {n}x{n} @ {n}x{n}, best of {max(2, repeats // 2)}",
    }


def limit_seconds(size: Size, limits: dict[str, Any]) -> float:
    """The limit for one evaluation: every pair's exp(), plus the distance matmul at large dim."""
    from drift_sweeps.core.streaming import _DIRECT_MAX_DIM

    t = size.pairs() / limits["exp_per_s"]
    if not size.periodic and size.dim > _DIRECT_MAX_DIM:
        t += 2.0 * size.dim * size.pairs() / limits["matmul_flops"]
    return t


# ---------------------------------------------------------------------------- one case


def _inputs(case: Case):
    import torch

    from drift_sweeps.core.operators import FieldSpec

    gen = torch.Generator().manual_seed(case.seed)
    s = case.size
    if s.periodic:
        x = torch.rand(s.n, s.dim, generator=gen) * (2 * math.pi)
        pos = torch.rand(s.m, s.dim, generator=gen) * (2 * math.pi)
        h = case.bandwidth
    else:
        x = torch.randn(s.n, s.dim, generator=gen)
        pos = torch.randn(s.m, s.dim, generator=gen)
        h = case.bandwidth * math.sqrt(s.dim)
    if case.backend == "stream3":  # the streaming code as it was before exact image sums
        field = FieldSpec(case.kernel, h, s.periodic, True, sinkhorn_iters=case.sinkhorn_iters, backend="stream",
                          images=old_shells(case.kernel, h, s.dim) if s.periodic else -1)
    else:
        field = FieldSpec(case.kernel, h, s.periodic, True, sinkhorn_iters=case.sinkhorn_iters, backend=case.backend)
    dev = torch.device(case.device)
    return x.to(dev), pos.to(dev), field


def old_shells(kernel: str, h: float, dim: int) -> int:
    """Image shells of the earlier rule: add shells while k((2s+1) pi) > 1e-4, at most 3 (for
    heavy tails that is not the periodic kernel; kept to compare speed with what trials ran)."""
    import torch

    from drift_sweeps.core.kernels import KERNELS

    s = 0
    while s < 3 and float(KERNELS.get(kernel).log(torch.tensor((2 * s + 1) * math.pi), h, dim)) > math.log(1e-4):
        s += 1
    return s


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _status_kib(field: str) -> Optional[int]:
    """A 'VmXXX:' line of /proc/self/status in KiB (None where there is no procfs)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> Optional[int]:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux: clear_refs 5).

    Returns the current RSS in bytes, or None where the reset is not possible (then the growth
    of ru_maxrss is used, which misses peaks below the high-water mark left by imports).
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


def run_case(case: Case, in_process: bool = False) -> dict[str, Any]:
    """Time one case in this process.  -> a result record (see CASE_KEYS)."""
    import torch

    from drift_sweeps.core.operators import drift

    torch.set_num_threads(case.threads)
    x, pos, field = _inputs(case)
    dev = x.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def op(xx, pp, ff):  # annealed: a new bandwidth at every call (in this process), so no per-bandwidth cache is warm
        if case.annealed:
            ff = dataclasses.replace(ff, bandwidth=ff.bandwidth * (1.0 - ANNEAL_STEP * next(_ANNEAL_CALLS)))
        return drift(case.operator, xx, pp, xx, ff)

    torch.exp(torch.zeros(4096, device=dev)).sum()  # thread pools and allocator warmed before the baseline
    with torch.no_grad():
        # imports (and at a fixed h the per-bandwidth caches: plans, coefficients) stay outside the
        # timing, as in a trial; the spectral plan depends on the sizes, so it warms up at full size
        warm = case.backend in ("spectral", "auto") and case.size.periodic
        op(x, pos, field) if warm else op(x[:16], pos[:16], field)
        if warm and case.backend == "auto" and not case.annealed:
            _settle(lambda: op(x, pos, field), case)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        rss_at_reset = _reset_peak_rss()
        base = rss_at_reset if rss_at_reset is not None else _maxrss_bytes()
    plans: list[str] = []
    with torch.no_grad(), _recording_plans(plans):
        times = _time_calls(lambda: (op(x, pos, field), sync()), case)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
        method = "torch.cuda.max_memory_allocated - allocated before"
    elif rss_at_reset is not None:
        peak = _status_kib("VmHWM") * 1024 - base
        method = ("peak RSS (VmHWM, reset by /proc/self/clear_refs before the calls) minus RSS at the reset"
                  + (", in-process" if in_process else ", fresh subprocess per case"))
    else:
        peak = _maxrss_bytes() - base
        method = ("ru_maxrss growth, in-process (sees only memory above earlier cases' high-water mark)"
                  if in_process else "ru_maxrss growth in a fresh subprocess")
    best = min(times)
    return {
        **_case_id(case), "status": "ok", "reason": "", "time_s": best, "times_s": times,
        "time_median_s": statistics.median(times), "pairs": case.size.pairs(),
        "pairs_per_s": case.size.pairs() / best, "peak_mem_bytes": max(int(peak), 0), "memory_method": method,
        "plan": plans[-1] if plans else _plan_label(case, x, pos, field),
        "bandwidth": field.bandwidth, "images": (2 * field.shells(field.bandwidth, case.size.dim) + 1) ** case.size.dim
        if case.size.periodic else 1,
    }


def _settle(call, case: Case, max_calls: int = 64) -> None:
    """At a fixed bandwidth auto builds its plan once streaming has cost as much (ski rental): call
    until it has (or max_calls, or the case's budget), so the timed calls see the steady state that a
    trial's later steps see."""
    plans: list[str] = []
    t0 = time.perf_counter()
    with _recording_plans(plans):
        while len(plans) < max_calls and time.perf_counter() - t0 < case.budget_s:
            call()
            if plans and plans[-1] != "stream":
                break


def _time_calls(call, case: Case) -> list[float]:
    """Wall times of up to case.repeats calls within case.budget_s (the first counted when slow)."""
    times: list[float] = []
    t0 = time.perf_counter()
    call()
    first = spent = time.perf_counter() - t0
    if first > 0.25 * case.budget_s:  # slow case: the first call is a measurement too
        times.append(first)
    while len(times) < case.repeats and spent < case.budget_s:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
        spent += times[-1]
    return times


@contextlib.contextmanager
def _recording_plans(plans: list[str]):
    """Record what auto's plan_for returned at each call (label of the last one is reported)."""
    from drift_sweeps.core import spectral

    real = spectral.plan_for

    def recorded(*args, **kwargs):
        plan = real(*args, **kwargs)
        plans.append(_label(plan))
        return plan

    spectral.plan_for = recorded
    try:
        yield
    finally:
        spectral.plan_for = real


def _label(plan) -> str:
    if plan.method in ("stream", "scan"):
        return plan.method
    if plan.method == "near":
        return f"near r={plan.cutoff:.3f}"
    return f"{plan.method} K={plan.modes}" + (f" a={plan.a:.3f}" if plan.method == "ewald" else "")


def _plan_label(case: Case, x, pos, field) -> str:
    """What the spectral and auto backends ran: 'direct K=..', 'ewald K=.. a=..', 'near r=..' or 'stream'."""
    from drift_sweeps.core import spectral

    if case.backend not in ("spectral", "auto") or case.operator not in spectral.SPECTRAL_IMPLEMENTATIONS:
        return case.backend if case.backend != "auto" else "stream"
    dim = x.shape[1]
    if case.backend == "spectral":
        plan = spectral.forced_plan(field, field.bandwidth, dim, x.shape[0], pos.shape[0], x.dtype)
    else:
        plan = spectral.plan_for(field, field.bandwidth, dim, x.shape[0], pos.shape[0], x.shape[0], x.device, x.dtype)
    return _label(plan)


def _case_id(case: Case) -> dict[str, Any]:
    s = case.size
    return {"operator": case.operator, "kernel": case.kernel, "n": s.n, "m": s.m, "dim": s.dim,
            "periodic": s.periodic, "size": s.label(), "backend": case.backend, "threads": case.threads,
            "device": case.device, "h": case.bandwidth, "schedule": "annealed" if case.annealed else "fixed"}


def run_case_subprocess(case: Case, timeout_s: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter (clean peak-memory measurement)."""
    payload = json.dumps({**dataclasses.asdict(case), "size": dataclasses.asdict(case.size)})
    cmd = [sys.executable, "-m", "benchmarks.field", "--case", payload]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _skipped(case, f"timed out after {timeout_s:.0f} s", status="failed")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return _skipped(case, f"exit {proc.returncode}: {tail[0][:200]}", status="failed")
    return json.loads(lines[-1])


def _skipped(case: Case, reason: str, status: str = "skipped") -> dict[str, Any]:
    return {**_case_id(case), "status": status, "reason": reason, "time_s": None, "times_s": [],
            "pairs": case.size.pairs(), "pairs_per_s": None, "peak_mem_bytes": None, "memory_method": None}


def dense_bytes_estimate(operator: str, size: Size, images: int) -> int:
    """Rough peak of the dense reference, calibrated on 1024 x 1024 x 64 (ru_maxrss): about
    2.2 (N, M, I, D) float32 tensors plus a few (N, M, I); score and mmd keep the autograd graph
    (about 2.5x that)."""
    per_nm = 2.2 * images * size.dim + 6 * images + 8
    if operator in ("score", "mmd"):
        per_nm *= 2.5
    return int(4 * size.n * max(size.m, size.n) * per_nm)


def free_ram_bytes() -> int:
    from drift_sweeps.core.streaming import free_memory_bytes

    import torch

    return free_memory_bytes(torch.device("cpu"))


def machine_info(device: str, threads: int, load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What the numbers were measured on, including how busy the machine was."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
        "python": platform.python_version(), "device": device,
        "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
        "ram_free_bytes_at_end": free_ram_bytes(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
