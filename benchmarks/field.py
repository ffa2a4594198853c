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
    python -m benchmarks.field --small                 # torus, N = M = 256..4096: auto against the best backend,
                                                       # fixed and annealed bandwidth
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

Modules: this one is the CLI; `field_case.py` runs one case, `field_grid.py` the grid and its
table, `field_sweep.py` the --sweep comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .field_case import CASE_KEYS, SCHEMA, Case, Size, run_case  # noqa: F401  (the CLI's names)
from .field_grid import DENSE_MEMORY_FRACTION, format_auto_table, format_table, run_grid  # noqa: F401
from .field_sweep import format_sweep, run_sweep_comparison


DEFAULT_SIZES = "4096x4096x2,4096x4096x64,16384x16384x2,65536x65536x2,1024x1024x1t"
QUICK_SIZES = "256x256x2,128x128x1t"
TORUS_SIZES = "4096x4096x1t,4096x4096x2t"
TORUS_BANDWIDTHS = "0.05,0.3,1,2.5"
TORUS_OPERATORS = "meanshift,score,mmd"
SMALL_SIZES = ",".join(f"{n}x{n}x{d}t" for d in (1, 2) for n in (256, 512, 2048, 4096))
SMALL_KERNELS = "gaussian,laplacian,cauchy,matern32,matern52"
SMALL_BANDWIDTHS = "0.1,0.3,1"
QUICK_OPERATORS = "meanshift,deng"
QUICK_KERNELS = "gaussian"
DEFAULT_JSON = "results/bench.json"
DEFAULT_SWEEP_JSON = "results/bench_sweep.json"
DEFAULT_BACKENDS = "stream,spectral,auto,dense"


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
    p.add_argument("--small", action="store_true",
                   help=f"auto against the best backend at trial sizes: sizes {SMALL_SIZES}, operator meanshift, "
                        f"kernels {SMALL_KERNELS}, h in {SMALL_BANDWIDTHS}, backends stream,spectral,auto, fixed "
                        "and annealed bandwidth, unless given")
    p.add_argument("--schedules", default="fixed",
                   help="comma list of fixed (one bandwidth) and annealed (a new bandwidth at every call) "
                        "(default: %(default)s)")
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
    if args.small:
        args.operators = args.operators or "meanshift"
        args.kernels = args.kernels or SMALL_KERNELS
        args.sizes = args.sizes or SMALL_SIZES
        args.bandwidths = SMALL_BANDWIDTHS if args.bandwidths == "1" else args.bandwidths
        args.backends = "stream,spectral,auto" if args.backends == DEFAULT_BACKENDS else args.backends
        args.schedules = "fixed,annealed" if args.schedules == "fixed" else args.schedules
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
    args.schedules = [_schedule(v) for v in args.schedules.split(",") if v.strip()]
    if args.no_dense:
        backends = [b for b in backends if b != "dense"]
    args.backends = backends
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available on this machine")
    return args


def _schedule(name: str) -> bool:
    """'fixed' -> False, 'annealed' -> True."""
    if name.strip() not in ("fixed", "annealed"):
        raise SystemExit(f"--schedules: unknown schedule {name!r}; allowed: fixed, annealed")
    return name.strip() == "annealed"


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
        if "auto" in args.backends and len(args.backends) > 1:
            print()
            print(format_auto_table(report))
    write_json(args.json, report)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
