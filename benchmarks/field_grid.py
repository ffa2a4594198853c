"""The grid of `python -m benchmarks.field`: every case, the speed-ups between backends, the table."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any, Optional, Sequence

from .field_case import (CASE_KEYS, SCHEMA, Case, dense_bytes_estimate, free_ram_bytes, limit_seconds,
                         machine_info, machine_limits, run_case, run_case_subprocess, _skipped)

DENSE_MEMORY_FRACTION = 0.6  # run the dense reference only where its estimate fits in this share of free RAM


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
                for backend, annealed in [(b, a) for a in args.schedules for b in args.backends]:
                    case = Case(operator, kernel, size, backend, bw, args.sinkhorn_iters, args.device,
                                threads, args.repeats, args.case_budget_s, args.seed, annealed)
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
                        measured.setdefault((operator, kernel, backend, bw, annealed), []).append((size.pairs(), res["time_s"]))
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


def _skip_reason(case: Case, images: int, measured: dict[tuple, list[tuple[int, float]]],
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
    history = measured.get((case.operator, case.kernel, case.backend, case.bandwidth, case.annealed), [])
    if history:
        pairs, secs = max(history)
        predicted = secs * case.size.pairs() / pairs
        if predicted > args.max_case_s:
            return f"predicted {predicted:.0f} s per evaluation > --max-case-s {args.max_case_s:g}"
    return ""


def _add_speedups(results: list[dict[str, Any]]) -> None:
    """time(dense) / time and time(stream) / time, same operator, kernel, size, h and schedule; and
    for auto, its time over the fastest backend's (auto_vs_best)."""
    def key(r: dict[str, Any]) -> tuple:
        return r["operator"], r["kernel"], r["size"], r["h"], r.get("schedule", "fixed")

    for ref, name in (("dense", "speedup_vs_dense"), ("stream", "speedup_vs_stream"),
                      ("stream3", "speedup_vs_stream3")):
        by = {key(r): r for r in results if r["backend"] == ref}
        for r in results:
            d = by.get(key(r))
            ok = r["status"] == "ok" and d is not None and d["status"] == "ok"
            r[name] = d["time_s"] / r["time_s"] if ok else None
    best: dict[tuple, float] = {}
    for r in results:
        if r["status"] == "ok" and r["backend"] in ("stream", "spectral", "auto", "dense"):
            best[key(r)] = min(best.get(key(r), math.inf), r["time_s"])
    for r in results:
        ok = r["backend"] == "auto" and r["status"] == "ok"
        r["auto_vs_best"] = r["time_s"] / best[key(r)] if ok else None


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
        if r.get("schedule", "fixed") == "fixed":
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


def _memory_methods(report: dict[str, Any]) -> str:
    methods = sorted({r["memory_method"] for r in report["cases"] if r.get("memory_method")})
    return "; ".join(methods) or "-"


def _load(v: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in v)


def format_auto_table(report: dict[str, Any], within: float = 1.25) -> str:
    """Markdown table of auto against the fastest backend, per size, kernel, h and schedule."""
    rows: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in report["cases"]:
        rows.setdefault((r["size"], r["operator"], r["kernel"], r["h"], r.get("schedule", "fixed")), {})[r["backend"]] = r
    head = ["size NxMxD", "operator", "kernel", "h", "bandwidth", "stream ms", "spectral ms", "auto ms",
            "auto ran", "auto / best", f"within {within:g}x", "its choice / best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    passed = total = chose_well = 0
    for (size, op, kern, h, sched), by in rows.items():
        auto = by.get("auto")
        if auto is None or auto["status"] != "ok":
            continue
        cells = [size, op, kern, f"{h:g}", sched]
        for name in ("stream", "spectral", "auto"):
            k = by.get(name)
            cells.append(f"{k['time_s'] * 1e3:.1f}" if k is not None and k["status"] == "ok" else
                         ("-" if k is None else k["status"]))
        ratio = auto["auto_vs_best"]
        ok = ratio <= within
        passed, total = passed + ok, total + 1
        choice = _choice_ratio(by, auto)
        chose_well += choice is not None and choice <= within
        cells += [auto.get("plan") or "", f"{ratio:.2f}", "yes" if ok else "**no**",
                  "-" if choice is None else f"{choice:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nauto within {within:g}x of the fastest backend: {passed} of {total} rows; the backend "
                 f"running what auto chose within {within:g}x of the fastest: {chose_well} of {total}")
    return "\n".join(lines)


def _choice_ratio(by: dict[str, dict[str, Any]], auto: dict[str, Any]) -> Optional[float]:
    """Time of the forced backend that runs what auto chose (stream, or spectral with the same method
    and split) over the fastest time: the cost model's choice, apart from the noise of auto's own run."""
    plan = auto.get("plan") or ""
    twin = by.get("stream") if plan == "stream" else by.get("spectral")
    if twin is None or twin["status"] != "ok":
        return None
    same = plan == "stream" or (twin.get("plan") or "").split(" K=")[0] == plan.split(" K=")[0] and \
        (twin.get("plan") or "").partition(" a=")[2] == plan.partition(" a=")[2]
    if not same:
        return None
    best = min(r["time_s"] for r in by.values() if r["status"] == "ok" and r["backend"] in ("stream", "spectral", "auto"))
    return twin["time_s"] / best
