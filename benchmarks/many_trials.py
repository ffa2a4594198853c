"""Many tiny trials through the CLI: per-trial overhead, the driver's memory as trials finish, and the time
to read the trials table afterwards.

    python -m benchmarks.many_trials --trials 10000 [--pack 100] [--num-cpus 2] [--results DIR]

The space is a grid of tiny torus trials (`--steps` steps of 16 particles, seeds as the axis).  While the
sweep runs, the driver's resident memory is sampled from /proc with the count of finished rows; printed:
wall time, per-trial overhead (wall x slots / trials - the trials' own mean run time; over the whole sweep and
in the steady state between a quarter and three quarters of the rows), RSS at every 1000
finished trials, and the time `results.read_table` takes on the trials table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from drift_sweeps import results

MARK_EVERY = 1000  # driver RSS printed at every 1000 finished trials


def space_file(folder: Path, trials: int, steps: int, pack: int) -> Path:
    doc = {"name": "many", "description": "many tiny trials", "search": "grid", "pack": pack,
           "resources": {"cpu": 1, "gpu": 0},
           "base": {"target": "torus1d", "k_max": 1, "n_samples": 16, "n_data": 16, "n_eval": 16, "steps": steps,
                    "eval_every": steps, "dt": 0.1, "samples_kept": 0},
           "axes": {"seed": list(range(trials))}}
    path = folder / "many.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its Python children named like the driver (MB)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


PROGRESS = re.compile(r"\[(\d+)/\d+\] ")


def rows(sweep: Path) -> int:
    folder = sweep / "trials"
    try:
        return sum(1 for n in os.listdir(folder) if n.endswith(".parquet") and not n.startswith("."))
    except OSError:
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--pack", type=int, default=1)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--results", default=None, help="results root (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="many"))
    root = Path(args.results) if args.results else tmp / "res"
    space = space_file(tmp, args.trials, args.steps, args.pack)
    cmd = [sys.executable, "-m", "drift_sweeps.run", str(space), "--results", str(root), "--overwrite",
           "--address", "local", "--num-cpus", str(args.num_cpus)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []  # the driver's output, timed: what it was doing at the peak
    done = [0]  # finished trials by the driver's progress lines ("[k/N] ..."): files are merged between rounds

    def read() -> None:
        for ln in proc.stdout:
            lines.append((time.monotonic() - start, ln.rstrip()))
            m = PROGRESS.match(ln)
            if m:
                done[0] = max(done[0], int(m.group(1)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[float, int, float]] = []
    while proc.poll() is None:
        samples.append((time.monotonic() - start, max(done[0], rows(root / "many")), rss_mb(proc.pid)))
        time.sleep(0.25)
    wall = time.monotonic() - start
    reader.join(timeout=10)
    sweep = str(root / "many")
    t0 = time.perf_counter()
    trials = results.read_table(sweep, "trials")
    read_s = time.perf_counter() - t0
    mean_run = float(trials["wall_time_s"].mean())
    per_trial = wall * args.num_cpus / len(trials) - (mean_run if args.pack == 1 else 0.0)
    print(f"trials: {len(trials)} of {args.trials} (exit {proc.returncode}), pack {args.pack}, "
          f"{args.num_cpus} CPUs, {args.steps} steps each")
    print(f"wall: {wall:.0f} s; wall x slots / trials: {wall * args.num_cpus / len(trials):.3f} s; "
          f"trial's own mean run time: {mean_run:.3f} s; overhead per trial: {per_trial:.3f} s")
    q1 = next((s for s in samples if s[1] >= 0.25 * len(trials)), None)
    q3 = next((s for s in samples if s[1] >= 0.75 * len(trials)), None)
    if q1 is not None and q3 is not None and q3[1] > q1[1]:  # between a quarter and three quarters of the rows:
        steady = (q3[0] - q1[0]) * args.num_cpus / (q3[1] - q1[1])  # without Ray's start, the actors' imports, the end
        print(f"steady state (rows {q1[1]} -> {q3[1]}): wall x slots / trials {steady:.3f} s; overhead per trial: "
              f"{steady - (mean_run if args.pack == 1 else 0.0):.3f} s")
    for mark in range(MARK_EVERY, len(trials) + 1, MARK_EVERY):
        at = next((s for s in samples if s[1] >= mark), None)
        if at is not None:
            print(f"driver RSS at {mark} rows: {at[2]:.0f} MB (t = {at[0]:.0f} s)")
    first = next((s for s in samples if s[1] > 0), None)
    last_row = next((s for s in samples if s[1] >= len(trials)), None)  # (compaction then leaves one file)
    peak = max(samples, key=lambda s: s[2], default=None)
    if first is not None and peak is not None:
        print(f"driver RSS at the first row: {first[2]:.0f} MB; peak: {peak[2]:.0f} MB at t = {peak[0]:.0f} s "
              f"({peak[1]} rows of {len(trials)})")
    for frac in (0.25, 0.5, 0.75, 1.0):
        at = next((s for s in samples if s[1] >= frac * len(trials)), None)
        if at is not None:
            print(f"  {at[1]:>6} rows: {at[2]:.0f} MB (t = {at[0]:.0f} s)")
    if first is not None:
        print(f"before the first row (driver start, Ray, the trial processes' start): {first[0]:.0f} s; the "
              "driver's lines until then:")
        for t, ln in [ln for ln in lines if ln[0] <= first[0]][:8]:
            print(f"    t = {t:6.1f} s  {ln[:150]}")
    if peak is not None:
        before = [ln for ln in lines if ln[0] <= peak[0]][-2:]
        after = [ln for ln in lines if ln[0] > peak[0]][:2]
        print("  the driver's lines around the peak:")
        for t, ln in before + [(peak[0], "<-- peak")] + after:
            print(f"    t = {t:6.1f} s  {ln[:150]}")
    if last_row is not None:
        print(f"after the last trial's row (report, compaction, shutdown): {wall - last_row[0]:.0f} s")
    print(f"read the trials table ({len(trials)} rows): {read_s:.2f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
