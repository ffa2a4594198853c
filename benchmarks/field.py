"""`python -m benchmarks.field`: how fast the drift operators are, against the machine's limits.

Default mode: for each operator x kernel x size x bandwidth (N points, M data samples, dim;
negatives are the points themselves, as in a trial), time one evaluation per backend of
`core.field.BACKENDS`: the streaming operator, the spectral (NUFFT) torus operator (meanshift,
score, mmd on the torus), what "auto" (the trials' default) picks, and the dense reference;
measure peak memory; measure, in the same run, the machine's limit for this work: exp() throughput on a
large buffer (every pair needs one exp: 2 N M of them per evaluation) and matmul throughput
(squared distances at large dim).  Prints a table, writes everything as JSON.

    python -m benchmarks.field                         # the full grid (tens of minutes on 2 cores)
    python -m benchmarks.field --quick                 # seconds: a smoke test
    python -m benchmarks.field --operators meanshift --kernels gaussian --sizes 4096x4096x2
    python -m benchmarks.field --torus                 # N = M = 4096, d = 1, 2: stream vs spectral per kernel and h
    python -m benchmarks.field --sweep                 # quickstart: sequential vs through Tune

Sizes are NxMxD, with a trailing "t" for the torus [0, 2pi)^D (periodic images chosen from the
bandwidth, as in trials), e.g. 1024x1024x1t.  Data: points and samples i.i.d. N(0, I) on the
plane, uniform on the torus; bandwidth h = --bandwidths * sqrt(D) on the plane (so that
|x - y|^2 / h^2 is about 2 whatever D), --bandwidths on the torus.

Peak memory: each case runs in a fresh subprocess, which reports how much its peak resident set
(getrusage ru_maxrss) grew during the operator calls, over a baseline taken after the inputs
were built and torch was warmed up: the operator's own working memory, including allocator
slack, not counting the inputs.  On CUDA: torch.cuda.max_memory_allocated over the allocated
baseline.  With --in-process (used by --quick) cases share one process, and the ru_maxrss delta
only sees memory beyond the high-water mark of earlier cases (marked in the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

SCHEMA = "benchmarks.field/2"
DEFAULT_SIZES = "4096x4096x2,4096x4096x64,16384x16384x2,65536x65536x2,1024x1024x1t"
QUICK_SIZES = "256x256x2,128x128x1t"
TORUS_SIZES = "4096x4096x1t,4096x4096x2t"
TORUS_BANDWIDTHS = "0.05,0.3,1,2.5"
TORUS_OPERATORS = "meanshift,score,mmd"
QUICK_OPERATORS = "meanshift,deng"
QUICK_KERNELS = "gaussian"
DEFAULT_JSON = "results/bench.json"
DEFAULT_SWEEP_JSON = "results/bench_sweep.json"
DEFAULT_BACKENDS = "stream,spectral,auto,dense"
DENSE_MEMORY_FRACTION = 0.6  # run the dense reference only where its estimate fits in this share of free RAM
LIMIT_EXP_ELEMS = 1 << 25  # exp() limit: in-place exp over a 128 MiB float32 buffer
CASE_KEYS = ("operator", "kernel", "n", "m", "dim", "periodic", "backend", "status", "reason", "time_s",
             "times_s", "pairs", "pairs_per_s", "peak_mem_bytes", "memory_method", "bandwidth", "images",
             "limit_s", "frac_of_limit", "speedup_vs_dense", "speedup_vs_stream", "speedup_vs_stream3", "plan")


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
    op = lambda xx, pp, ff: drift(case.operator, xx, pp, xx, ff)  # noqa: E731
    torch.exp(torch.zeros(4096, device=dev)).sum()  # thread pools and allocator warmed before the baseline
    with torch.no_grad():
        # imports and per-bandwidth caches (the spectral coefficients) stay outside the timing, as
        # in a trial at fixed h; the spectral plan depends on the sizes, so it warms up at full size
        warm = case.backend in ("spectral", "auto") and case.size.periodic
        op(x, pos, field) if warm else op(x[:16], pos[:16], field)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        rss_at_reset = _reset_peak_rss()
        base = rss_at_reset if rss_at_reset is not None else _maxrss_bytes()
    times: list[float] = []
    spent = 0.0
    with torch.no_grad():
        t0 = time.perf_counter()
        op(x, pos, field)
        sync()
        first = time.perf_counter() - t0
        spent += first
        if first > 0.25 * case.budget_s:  # slow case: the first call is a measurement too
            times.append(first)
        while len(times) < case.repeats and spent < case.budget_s:
            t0 = time.perf_counter()
            op(x, pos, field)
            sync()
            dt_ = time.perf_counter() - t0
            spent += dt_
            times.append(dt_)
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
        "plan": _plan_label(case, x, pos, field),
        "bandwidth": field.bandwidth, "images": (2 * field.shells(field.bandwidth, case.size.dim) + 1) ** case.size.dim
        if case.size.periodic else 1,
    }


def _plan_label(case: Case, x, pos, field) -> str:
    """What the spectral and auto backends ran: 'direct K=..', 'ewald K=.. a=..' or 'stream'."""
    from drift_sweeps.core import spectral

    if case.backend not in ("spectral", "auto") or case.operator not in spectral.SPECTRAL_IMPLEMENTATIONS:
        return case.backend if case.backend != "auto" else "stream"
    dim = x.shape[1]
    if case.backend == "spectral":
        plan = spectral.forced_plan(field, field.bandwidth, dim, x.shape[0], pos.shape[0])
    else:
        plan = spectral.plan_for(field, field.bandwidth, dim, x.shape[0], pos.shape[0], x.shape[0], x.device)
    if plan.method == "stream":
        return "stream"
    return f"{plan.method} K={plan.modes}" + (f" a={plan.a:.3f}" if plan.method == "ewald" else "")


def _case_id(case: Case) -> dict[str, Any]:
    s = case.size
    return {"operator": case.operator, "kernel": case.kernel, "n": s.n, "m": s.m, "dim": s.dim,
            "periodic": s.periodic, "size": s.label(), "backend": case.backend, "threads": case.threads,
            "device": case.device, "h": case.bandwidth}


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


# ---------------------------------------------------------------------------- the grid


def run_grid(args: argparse.Namespace) -> dict[str, Any]:
    """Every case of the grid, the limits and the machine description."""
    import torch

    from drift_sweeps.core.field import FieldSpec

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.time()
    load_before = os.getloadavg()
    limits = machine_limits(args.device)
    results: list[dict[str, Any]] = []
    measured: dict[tuple[str, str, str], list[tuple[int, float]]] = {}  # (op, kernel, backend) -> (pairs, s)
    for size in args.sizes:
        for operator in args.operators:
            for kernel, bw in [(k, b) for k in args.kernels for b in args.bandwidths]:
                h = bw if size.periodic else bw * math.sqrt(size.dim)
                images = (2 * FieldSpec(kernel, h, size.periodic).shells(h, size.dim) + 1) ** size.dim \
                    if size.periodic else 1
                for backend in args.backends:
                    case = Case(operator, kernel, size, backend, bw, args.sinkhorn_iters, args.device,
                                threads, args.repeats, args.case_budget_s, args.seed)
                    reason = _skip_reason(case, images, measured, args)
                    if reason:
                        res = _skipped(case, reason)
                    elif args.in_process:
                        try:
                            res = run_case(case, in_process=True)
                        except (RuntimeError, MemoryError, ImportError, KeyError) as err:
                            res = _skipped(case, f"{type(err).__name__}: {err}"[:200], status="failed")
                    else:
                        res = run_case_subprocess(case, args.case_timeout_s)
                    res.setdefault("bandwidth", h)
                    res.setdefault("images", images)
                    res["limit_s"] = limit_seconds(size, limits)
                    if res["status"] == "ok":
                        res["frac_of_limit"] = res["limit_s"] / res["time_s"]
                        measured.setdefault((operator, kernel, backend, bw), []).append((size.pairs(), res["time_s"]))
                    results.append(res)
                    print(_progress_line(res), flush=True)
    _add_speedups(results)
    for r in results:
        for key in CASE_KEYS:
            r.setdefault(key, None)
    return {
        "schema": SCHEMA,
        "command": [sys.executable, "-m", "benchmarks.field", *args.argv],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": time.time() - started,
        "machine": machine_info(args.device, threads, load_before),
        "limits": limits,
        "settings": {"bandwidths": args.bandwidths, "bandwidth_rule": "plane: bandwidth * sqrt(dim); torus: bandwidth",
                     "sinkhorn_iters": args.sinkhorn_iters, "repeats": args.repeats,
                     "case_budget_s": args.case_budget_s, "max_case_s": args.max_case_s,
                     "in_process": args.in_process, "negatives": "x itself (neg_is_x, self-pairs masked)"},
        "cases": results,
    }


def _skip_reason(case: Case, images: int, measured: dict[tuple[str, str, str, float], list[tuple[int, float]]],
                 args: argparse.Namespace) -> str:
    """Why a case is not run ('' to run it)."""
    from drift_sweeps.core import spectral

    if case.backend == "spectral":
        if not case.size.periodic:
            return "spectral: torus only"
        if case.operator not in spectral.SPECTRAL_IMPLEMENTATIONS:
            return f"spectral: {', '.join(spectral.SPECTRAL_IMPLEMENTATIONS)} only"
        if not spectral.supported(case.kernel, case.size.dim):
            return f"spectral: no transform for {case.kernel} in {case.size.dim}-D"
    if case.backend == "dense" and case.device == "cpu":
        need = dense_bytes_estimate(case.operator, case.size, images)
        free = free_ram_bytes()
        if need > DENSE_MEMORY_FRACTION * free:
            return f"dense would need ~{need / 2**30:.0f} GiB (> {DENSE_MEMORY_FRACTION:.0%} of {free / 2**30:.0f} GiB free)"
    history = measured.get((case.operator, case.kernel, case.backend, case.bandwidth), [])
    if history:
        pairs, secs = max(history)
        predicted = secs * case.size.pairs() / pairs
        if predicted > args.max_case_s:
            return f"predicted {predicted:.0f} s per evaluation > --max-case-s {args.max_case_s:g}"
    return ""


def _add_speedups(results: list[dict[str, Any]]) -> None:
    """time(dense) / time and time(stream) / time, same operator, kernel, size and h."""
    for ref, key in (("dense", "speedup_vs_dense"), ("stream", "speedup_vs_stream"),
                     ("stream3", "speedup_vs_stream3")):
        by = {(r["operator"], r["kernel"], r["size"], r["h"]): r for r in results if r["backend"] == ref}
        for r in results:
            d = by.get((r["operator"], r["kernel"], r["size"], r["h"]))
            ok = r["status"] == "ok" and d is not None and d["status"] == "ok"
            r[key] = d["time_s"] / r["time_s"] if ok else None


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


def _progress_line(r: dict[str, Any]) -> str:
    head = f"{r['size']:>16} {r['operator']:>9} {r['kernel']:>9} {r['backend']:>6}"
    if r["status"] != "ok":
        return f"{head}  {r['status']}: {r['reason']}"
    return (f"{head}  {r['time_s'] * 1e3:10.2f} ms  {r['pairs_per_s'] / 1e6:9.1f} Mpairs/s  "
            f"{r['frac_of_limit']:6.1%} of limit  peak +{_mib(r['peak_mem_bytes'])}")


def _mib(b: Optional[int]) -> str:
    return "-" if b is None else f"{b / 2**20:.0f} MiB"


def format_table(report: dict[str, Any]) -> str:
    """Markdown table: one row per operator x kernel x size x h, backends side by side."""
    from drift_sweeps.core.field import BACKENDS

    rows: dict[tuple[str, str, str, float], dict[str, dict[str, Any]]] = {}
    for r in report["cases"]:
        rows.setdefault((r["size"], r["operator"], r["kernel"], r["h"]), {})[r["backend"]] = r
    backends = [b for b in (*BACKENDS, "stream3") if any(b in v for v in rows.values())]
    head = ["size NxMxD", "operator", "kernel", "h", "stream ms", "Mpairs/s", "of exp limit", "stream peak"]
    if "dense" in backends:
        head += ["dense ms", "dense peak", "stream speedup"]
    if "stream3" in backends:
        head += ["stream3 ms"]
    for name in ("spectral", "auto"):
        if name in backends:
            head += [f"{name} ms", f"{name} peak", f"{name} vs stream", f"{name} vs stream3", f"{name} plan"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (size, op, kern, h), by in rows.items():
        s = by.get("stream")
        cells = [size, op, kern, f"{h:g}"]
        if s is not None and s["status"] == "ok":
            cells += [f"{s['time_s'] * 1e3:.1f}", f"{s['pairs_per_s'] / 1e6:.0f}", f"{s['frac_of_limit']:.0%}",
                      _mib(s["peak_mem_bytes"])]
        else:
            cells += [_why(s), "", "", ""]
        if "dense" in backends:
            d = by.get("dense")
            if d is not None and d["status"] == "ok":
                sp = s.get("speedup_vs_dense") if s else None
                cells += [f"{d['time_s'] * 1e3:.0f}", _mib(d["peak_mem_bytes"]), f"{sp:.1f}x" if sp else ""]
            else:
                cells += [_why(d), "", ""]
        if "stream3" in backends:
            k = by.get("stream3")
            cells += [f"{k['time_s'] * 1e3:.1f}" if k is not None and k["status"] == "ok" else _why(k)]
        for name in ("spectral", "auto"):
            if name in backends:
                k = by.get(name)
                if k is not None and k["status"] == "ok":
                    sp, sp3 = k.get("speedup_vs_stream"), k.get("speedup_vs_stream3")
                    cells += [f"{k['time_s'] * 1e3:.1f}", _mib(k["peak_mem_bytes"]), f"{sp:.1f}x" if sp else "",
                              f"{sp3:.1f}x" if sp3 else "", k.get("plan") or ""]
                else:
                    cells += [_why(k), "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    lim = report["limits"]
    m = report["machine"]
    lines += [
        "",
        f"limits: exp() {lim['exp_per_s'] / 1e9:.2f} G/s ({lim['exp_method']}; the streaming operators "
        f"call exp2, {lim.get('exp2_per_s', float('nan')) / 1e9:.2f} G/s the same way); "
        f"matmul {lim['matmul_flops'] / 1e9:.0f} GFLOP/s ({lim['matmul_method']})",
        "'of exp limit' = (pairs / exp rate [+ 2 D pairs / matmul rate when D > 8]) / stream time; "
        "pairs = N (M + N) per evaluation",
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} thread(s), "
        f"device {m['device']}; load average before {_load(m['load_avg_before'])}, after {_load(m['load_avg_after'])}",
        f"peak memory: {_memory_methods(report)}",
    ]
    return "\n".join(lines)


def _why(r: Optional[dict[str, Any]]) -> str:
    if r is None:
        return "-"
    return f"{r['status']}: {r['reason']}"


def _load(v: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in v)


def _memory_methods(report: dict[str, Any]) -> str:
    methods = sorted({r["memory_method"] for r in report["cases"] if r.get("memory_method")})
    return "; ".join(methods) or "-"


# ---------------------------------------------------------------------------- --sweep


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


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The CLI."""
    from drift_sweeps.core.field import BACKENDS
    from drift_sweeps.core.kernels import KERNELS
    from drift_sweeps.core.operators import OPERATORS

    p = argparse.ArgumentParser(prog="python -m benchmarks.field",
                                description="Benchmark the drift operators (streaming vs dense) against exp()/matmul "
                                            "throughput, or a sweep run sequentially vs through Tune.")
    p.add_argument("--operators", default=None, help=f"comma list (default: all: {','.join(OPERATORS.names())})")
    p.add_argument("--kernels", default=None, help=f"comma list (default: all: {','.join(KERNELS.names())})")
    p.add_argument("--sizes", default=None, help=f"comma list of NxMxD[t] (default: {DEFAULT_SIZES})")
    p.add_argument("--backends", default=DEFAULT_BACKENDS,
                   help=f"comma list of {', '.join(BACKENDS)}, stream3 (streaming with the earlier image rule: "
                        "at most 3 shells) (default: %(default)s)")
    p.add_argument("--no-dense", action="store_true", help="skip the dense reference")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    p.add_argument("--bandwidths", default="1", help="comma list: h on the torus, h / sqrt(D) on the plane (default 1)")
    p.add_argument("--torus", action="store_true",
                   help=f"the torus grid: sizes {TORUS_SIZES}, operators {TORUS_OPERATORS}, h in {TORUS_BANDWIDTHS}, "
                        "backends stream3,spectral,auto, unless given")
    p.add_argument("--sinkhorn-iters", type=int, default=50, help="as the trial default (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case after one warm-up (default: 3)")
    p.add_argument("--case-budget-s", type=float, default=20.0,
                   help="stop repeating a case after this much time (default: %(default)s)")
    p.add_argument("--max-case-s", type=float, default=120.0,
                   help="skip a case whose predicted time per evaluation (from the same operator at a smaller "
                        "size) exceeds this (default: %(default)s)")
    p.add_argument("--case-timeout-s", type=float, default=1800.0, help="kill a case's subprocess after this")
    p.add_argument("--in-process", action="store_true",
                   help="run cases in this process (faster; peak memory then only approximate)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test in seconds: sizes {QUICK_SIZES}, operators {QUICK_OPERATORS}, kernel "
                        f"{QUICK_KERNELS} unless given, 1 repeat, in-process")
    p.add_argument("--json", default=None,
                   help=f"where to write the JSON (default: {DEFAULT_JSON}, or {DEFAULT_SWEEP_JSON} with --sweep)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", action="store_true",
                   help="instead: run a search space's trials back to back, then through Tune; print the ratio")
    p.add_argument("--space", default="quickstart", help="--sweep: the search space (default: %(default)s)")
    p.add_argument("--num-cpus", type=int, default=None, help="--sweep: CPUs of the local Ray (default: all)")
    p.add_argument("--ray-temp-dir", default=None, help="--sweep: Ray's temp folder (default: a fresh one in /tmp)")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case, print JSON
    return p


def _resolve(args: argparse.Namespace, argv: Sequence[str]) -> argparse.Namespace:
    from drift_sweeps.core.field import BACKENDS
    from drift_sweeps.core.kernels import KERNELS
    from drift_sweeps.core.operators import OPERATORS

    args.argv = list(argv)
    args.json = args.json or (DEFAULT_SWEEP_JSON if args.sweep else DEFAULT_JSON)
    if args.torus:
        args.operators = args.operators or TORUS_OPERATORS
        args.sizes = args.sizes or TORUS_SIZES
        if args.bandwidths == "1":
            args.bandwidths = TORUS_BANDWIDTHS
        if args.backends == DEFAULT_BACKENDS:
            args.backends = "stream3,spectral,auto"
    if args.quick:
        args.operators = args.operators or QUICK_OPERATORS
        args.kernels = args.kernels or QUICK_KERNELS
        args.sizes = args.sizes or QUICK_SIZES
        args.repeats = 1
        args.in_process = True
        args.sinkhorn_iters = min(args.sinkhorn_iters, 5)
    args.operators = _names(args.operators, OPERATORS.names(), "operator")
    args.kernels = _names(args.kernels, KERNELS.names(), "kernel")
    args.sizes = [Size.parse(s) for s in (args.sizes or DEFAULT_SIZES).split(",") if s.strip()]
    try:
        args.bandwidths = [float(b) for b in str(args.bandwidths).split(",") if b.strip()]
    except ValueError:
        raise SystemExit(f"--bandwidths: expected a comma list of numbers, got {args.bandwidths!r}") from None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in (*BACKENDS, "stream3"):
            raise SystemExit(f"--backends: unknown backend {b!r}; allowed: {', '.join(BACKENDS)}, stream3")
    if args.no_dense:
        backends = [b for b in backends if b != "dense"]
    args.backends = backends
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available on this machine")
    return args


def _names(given: Optional[str], allowed: list[str], what: str) -> list[str]:
    if not given:
        return list(allowed)
    names = [n.strip() for n in given.split(",") if n.strip()]
    for n in names:
        if n not in allowed:
            raise SystemExit(f"unknown {what} {n!r}; allowed: {', '.join(allowed)}")
    return names


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write JSON through a temporary name, so a crash never leaves half a file."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.case is not None:
        raw = json.loads(args.case)
        case = Case(**{**raw, "size": Size(**raw["size"])})
        print(json.dumps(run_case(case)), flush=True)
        return 0
    args = _resolve(args, argv)
    if args.sweep:
        report = run_sweep_comparison(args)
        print(format_sweep(report))
    else:
        report = run_grid(args)
        print()
        print(format_table(report))
    write_json(args.json, report)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
