"""Generator toys against their floors: the issue's acceptance numbers per target, over seeds.

`python -m analysis.toy_floors SWEEP [SWEEP ...] --out DIR [--factor 1.5]` writes `floors.csv`, `floors.md` and
`figures/samples.*` (each 2-D trial's stored final samples, seeds by targets):
per target (and per kernel / variant / operator where the sweeps vary them) the ratio of each final quality
metric to its data-vs-data floor (mean, 95% t interval over seeds, the worst seed), and for targets with known
modes the modes covered and the share of samples within 3 std of a mode (mean, worst seed).  `acceptance`
checks the bar of the generators issue on every seed: energy distance and sliced W2 within `factor` of their
floors, every mode covered, at least `share` of the samples within 3 std.  `--compare kernel:gaussian:laplacian`
adds `difference.md`: per target and metric the difference of two groups' means with a Welch t interval and,
when it includes 0, the largest difference the data do not exclude.  No torch, no ray.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from . import style
from .formatting import markdown
from .phase import OK_STATUSES, _t_ci, read_samples, read_trials
from .stats import compare_groups, equivalence_bound
from .plots.common import sample_panel

GROUP_KEYS = ("target", "kernel", "variant", "operator", "lr_decay", "eval_repeats")  # the last two: recipe, protocol
RATIOS = ("sample_distance", "sliced_w2", "w2_exact", "mmd2", "frechet_distance")  # final_<m> / <m>_floor
CHECKED = ("sample_distance", "sliced_w2")  # the acceptance bar's two floors
FACTOR = 1.5  # within this factor of the floor
SHARE = 0.9  # of the samples within 3 std of a mode
MIN_HALF_SPAN = 2.4  # the samples figure shows at least [-2.4, 2.4]^2


def floor_ratios(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (seeds pooled): per metric of RATIOS the ratio to its floor (mean, lo, hi,
    worst seed), and on targets with modes the modes covered and high-quality share (mean, worst seed)."""
    tr = trials[trials["status"].isin(OK_STATUSES)]
    keys = [k for k in GROUP_KEYS if k in tr and tr[k].notna().any()]
    tr = tr.assign(**{k: tr[k].fillna("-") for k in keys})
    rows = []
    for key, g in tr.groupby(keys, sort=True):
        row = {**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "seeds": len(g)}
        for m in RATIOS:
            if f"final_{m}" not in g or f"{m}_floor" not in g:
                continue
            r = (g[f"final_{m}"] / g[f"{m}_floor"]).to_numpy(float)
            if not np.isfinite(r).any():
                continue
            row[m], row[m + "_lo"], row[m + "_hi"] = _t_ci(r)
            row[m + "_worst"] = float(np.nanmax(r))
        if "final_modes_covered" in g and g["final_modes_covered"].notna().any():
            row["modes_total"] = float(g["modes_covered_floor"].max())
            row["modes_covered"] = float(g["final_modes_covered"].mean())
            row["modes_covered_worst"] = float(g["final_modes_covered"].min())
            row["high_quality_share"] = float(g["final_high_quality_share"].mean())
            row["high_quality_share_worst"] = float(g["final_high_quality_share"].min())
            row["high_quality_share_floor"] = float(g["high_quality_share_floor"].mean())
        if "final_class_coverage" in g and g["final_class_coverage"].notna().any():  # digits: classes covered
            row["class_coverage_worst"] = float(g["final_class_coverage"].min())
        row["wall_time_s"] = float(g["wall_time_s"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def acceptance(table: pd.DataFrame, factor: float = FACTOR, share: float = SHARE) -> pd.DataFrame:
    """Per row of `floor_ratios`: whether every seed meets the bar (`ok`), and what fails in words."""
    out = []
    for _, r in table.iterrows():
        fails = [f"{m} {r[m + '_worst']:.2f}x floor" for m in CHECKED
                 if m + "_worst" in r and np.isfinite(r[m + "_worst"]) and r[m + "_worst"] > factor]
        if "modes_total" in r and np.isfinite(r.get("modes_total", math.nan)):
            if r["modes_covered_worst"] < r["modes_total"]:
                fails.append(f"{r['modes_covered_worst']:.0f}/{r['modes_total']:.0f} modes")
            if r["high_quality_share_worst"] < share:
                fails.append(f"{r['high_quality_share_worst']:.1%} within 3 std")
        out.append({**{k: r[k] for k in GROUP_KEYS if k in r}, "seeds": r["seeds"], "ok": not fails,
                    "fails (worst seed)": "; ".join(fails) or "-"})
    return pd.DataFrame(out)


def _cell(r: pd.Series, m: str) -> str:
    if m not in r or not np.isfinite(r[m]):
        return "-"
    ci = f" [{r[m + '_lo']:.2f}, {r[m + '_hi']:.2f}]" if np.isfinite(r[m + "_lo"]) else ""
    return f"{r[m]:.2f}{ci} (worst {r[m + '_worst']:.2f})"


def floors_markdown(table: pd.DataFrame, factor: float = FACTOR, share: float = SHARE) -> str:
    """The ratios to the floors and the mode metrics as one Markdown table, then the acceptance table."""
    keys = [k for k in GROUP_KEYS if k in table]
    shown = table[keys + ["seeds"]].copy()
    for m in RATIOS:
        if m in table:
            shown[f"{m} / floor"] = [_cell(r, m) for _, r in table.iterrows()]
    if "modes_total" in table:
        shown["modes covered (worst)"] = [
            "-" if not np.isfinite(r.get("modes_total", math.nan)) else
            f"{r['modes_covered']:.3g}/{r['modes_total']:.0f} ({r['modes_covered_worst']:.0f})"
            for _, r in table.iterrows()]
        shown["within 3 std (worst; data)"] = [
            "-" if not np.isfinite(r.get("modes_total", math.nan)) else
            f"{r['high_quality_share']:.1%} ({r['high_quality_share_worst']:.1%}; {r['high_quality_share_floor']:.1%})"
            for _, r in table.iterrows()]
    if "class_coverage_worst" in table:
        shown["class coverage (worst seed)"] = table["class_coverage_worst"]
    shown["s/trial"] = table["wall_time_s"].round(0)
    acc = acceptance(table, factor, share)
    return (markdown(shown.reset_index(drop=True)) + "\n\n"
            + f"Acceptance on every seed (energy distance and sliced W2 within {factor:g}x their floors; on mixtures "
              f"every mode covered and >= {share:.0%} of the samples within 3 std):\n\n" + markdown(acc))


def difference(trials: pd.DataFrame, key: str, a: str, b: str, metrics: Sequence[str], level: float = 0.95,
               n_boot: int = 2000) -> pd.DataFrame:
    """b minus a (rows with key == a, key == b; seeds independent) per metric, per target: the difference of the
    means with a Welch t interval (the primary one: few seeds), the seeds bootstrap interval of
    `stats.compare_groups` next to it, and, when the Welch interval includes 0, the largest |difference| the
    data do not exclude (`stats.equivalence_bound`), also relative to a's mean."""
    from scipy import stats

    tr = trials[trials["status"].isin(OK_STATUSES)]
    rows = []
    for target, g in tr.groupby("target", sort=True):
        for m in metrics:
            col = m if m in g else f"final_{m}"
            if col not in g or g[col].isna().all():
                continue
            x = g[g[key] == a][col].dropna().to_numpy(float)
            y = g[g[key] == b][col].dropna().to_numpy(float)
            if len(x) < 2 or len(y) < 2:
                continue
            vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
            se = math.sqrt(vx + vy)
            dof = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1)) if se > 0 else math.inf
            d = float(y.mean() - x.mean())
            half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
            boot = compare_groups(pd.DataFrame({"cell": 0, "value": x}), pd.DataFrame({"cell": 0, "value": y}),
                                  n_boot=n_boot, level=level)
            bound = equivalence_bound(d - half, d + half)
            rows.append({"target": target, "metric": m.replace("final_", ""), f"{a} (n)": f"{x.mean():.4g} ({len(x)})",
                         f"{b} (n)": f"{y.mean():.4g} ({len(y)})", "diff": d, "lo": d - half, "hi": d + half,
                         "boot_lo": boot["diff_lo"], "boot_hi": boot["diff_hi"], "equivalence_bound": bound,
                         "bound / a": bound / abs(x.mean()) if x.mean() else math.nan,
                         "verdict": (f"{b} lower" if d + half < 0 else f"{b} higher" if d - half > 0
                                     else f"not separable: |diff| < {bound:.3g}")})
    return pd.DataFrame(rows)


def sample_panels(trials: pd.DataFrame, samples: pd.DataFrame) -> dict[tuple[str, int], np.ndarray]:
    """(target, seed) -> that trial's stored final samples (n, 2); 2-D targets only."""
    out = {}
    for _, r in trials[trials["status"].isin(OK_STATUSES)].iterrows():
        rows = samples[(samples["trial_id"] == r["trial_id"]) & (samples["sweep"] == r["sweep"])]
        if len(rows):
            x = np.stack(rows.sort_values("index")["x"].to_numpy())
            if x.shape[1] == 2:
                out[(r["target"], int(r["seed"]))] = x
    return out


def draw_samples(panels: dict[tuple[str, int], np.ndarray], stem: str,
                 formats: Sequence[str] = style.FORMATS) -> list[str]:
    """One scatter per (seed row, target column), each target's panels on the same limits."""
    plt = style.plt
    targets = sorted({k[0] for k in panels})
    seeds = sorted({k[1] for k in panels})
    fig, axes = plt.subplots(len(seeds), len(targets), figsize=(1.5 * len(targets) + 0.3, 1.5 * len(seeds) + 0.4),
                             squeeze=False)
    # one square window for every panel (the toys share a scale, about [-2, 2]^2): a collapsed law stays a dot
    allx = np.concatenate(list(panels.values()))
    lim = max(MIN_HALF_SPAN, float(np.abs(np.quantile(allx, [0.005, 0.995], axis=0)).max()) * 1.08)
    for j, target in enumerate(targets):
        for i, seed in enumerate(seeds):
            ax = axes[i, j]
            x = panels.get((target, seed))
            if x is not None:
                ax.scatter(x[:, 0], x[:, 1], s=1.5, lw=0, alpha=0.7)
            else:  # no trial of this seed in the sweeps read: say so, not an empty box a reader takes for a collapse
                ax.text(0.5, 0.5, "no trial", ha="center", va="center", transform=ax.transAxes, color="0.5")
            sample_panel(ax, lim)
            if i == 0:
                ax.set_title(target)
            if j == 0:
                ax.set_ylabel(f"seed {seed}")
    fig.tight_layout()
    return style.save_figure(fig, stem, formats)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m analysis.toy_floors", description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="+", help="sweep folders of generator trials on 2-D toys, read together")
    p.add_argument("--out", required=True, help="folder for floors.csv and floors.md")
    p.add_argument("--factor", type=float, default=FACTOR, help=f"the bar on the floor ratios (default {FACTOR})")
    p.add_argument("--share", type=float, default=SHARE, help=f"the bar on the share within 3 std (default {SHARE})")
    p.add_argument("--compare", metavar="KEY:A:B", help="also B minus A for rows KEY == A, KEY == B per target "
                                                          "(e.g. kernel:gaussian:laplacian), written to difference.md")
    p.add_argument("--png-only", action="store_true", help="write the samples figure as PNG only (for docs/)")
    p.add_argument("--metrics", default="frechet_distance,sample_distance,sliced_w2,class_max_deviation",
                   help="metrics of --compare (comma-separated)")
    args = p.parse_args(argv)
    trials = read_trials(args.sweeps)
    table = floor_ratios(trials)
    if table.empty:
        print("error: no finished trials", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    table.to_csv(os.path.join(args.out, "floors.csv"), index=False)
    text = floors_markdown(table, args.factor, args.share)
    with open(os.path.join(args.out, "floors.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)
    samples = read_samples(args.sweeps)
    panels = sample_panels(trials, samples) if samples is not None else {}
    if panels:
        print("\n".join(draw_samples(panels, os.path.join(args.out, "figures", "samples"),
                                      ("png",) if args.png_only else style.FORMATS)))
    if args.compare:
        key, a, b = args.compare.split(":")
        diff = difference(trials, key, a, b, args.metrics.split(","))
        dtext = (f"{b} minus {a} (`{key}`), mean over seeds with a 95% Welch t interval [lo, hi] and the seeds "
                 f"bootstrap [boot_lo, boot_hi]; when [lo, hi] includes 0, the largest difference not excluded:\n\n"
                 + markdown(diff, digits=3))
        with open(os.path.join(args.out, "difference.md"), "w") as fh:
            fh.write(dtext + "\n")
        print("\n" + dtext)
    return 0


if __name__ == "__main__":
    sys.exit(main())
