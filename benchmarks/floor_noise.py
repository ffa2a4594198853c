"""`python -m benchmarks.floor_noise`: what a perfect generator scores against the data-vs-data floors.

A plane trial's quality bar is a ratio to a floor: the energy distance (or sliced W2) of the generated
samples to one data draw, over the same distance between two data draws.  Both are random.  Here the
"generator" draws from the target itself, so every ratio above 1 is noise: for each repetition, R
independent (generated, data) pairs against R independent (data, data) pairs, as a trial with
`eval_repeats: R` measures them.  Prints, per target and metric, the share of repetitions within the
factor (default 1.5), the chance that five seeds all are, and the median and largest ratio.

    python -m benchmarks.floor_noise                               # R = 1, 200 repetitions, the four toys
    python -m benchmarks.floor_noise --repeats 32 --reps 12 --targets moons,eight_gaussians
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Optional, Sequence

TOYS = "moons,eight_gaussians,swiss_roll,checkerboard"


def ratios(target: str, repeats: int, reps: int, n: int, seed: int) -> dict[str, list[float]]:
    """Per metric, `reps` ratios (mean over `repeats` model-vs-data pairs) / (mean over as many data-vs-data)."""
    import torch

    from drift_sweeps.core.quality import energy_distance, sliced_w2
    from drift_sweeps.spine.config import TrialConfig
    from drift_sweeps.trial import build_target

    torch.set_num_threads(1)
    law = build_target(TrialConfig.from_dict({"target": target, "model": "mlp"}))
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"energy distance": [], "sliced W2": []}
    for _ in range(reps):
        num, den = [0.0, 0.0], [0.0, 0.0]
        for _ in range(repeats):
            data, model, other = law.sample(n, gen), law.sample(n, gen), law.sample(n, gen)
            num[0] += energy_distance(model, data, False)
            den[0] += energy_distance(other, data, False)
            num[1] += sliced_w2(model, data, torch.Generator().manual_seed(1))  # the same directions for both
            den[1] += sliced_w2(other, data, torch.Generator().manual_seed(1))
        out["energy distance"].append(num[0] / den[0])
        out["sliced W2"].append(num[1] / den[1])
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.floor_noise", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=1, help="R, as `eval_repeats` (default: %(default)s)")
    p.add_argument("--reps", type=int, default=200, help="repetitions per target (default: %(default)s)")
    p.add_argument("--n", type=int, default=1000, help="samples per draw, as n_eval (default: %(default)s)")
    p.add_argument("--factor", type=float, default=1.5, help="the bar (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=5, help="seeds that must all pass (default: %(default)s)")
    p.add_argument("--targets", default=TOYS, help="comma-separated (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.reps < 1 or args.n < 2:
        p.error("--repeats and --reps must be >= 1, --n >= 2")
    print(f"| target | metric | R | within {args.factor:g}x, per seed | all {args.seeds} seeds | median | max | reps |")
    print("|---|---|---|---|---|---|---|---|")
    for target in args.targets.split(","):
        for metric, values in ratios(target, args.repeats, args.reps, args.n, args.seed).items():
            share = sum(v <= args.factor for v in values) / len(values)
            print(f"| {target} | {metric} | {args.repeats} | {share:.2f} | {share ** args.seeds:.2f} | "
                  f"{statistics.median(values):.2f} | {max(values):.2f} | {len(values)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
