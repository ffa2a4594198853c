"""Generator studies: final sample quality per configuration, mean and 95% CI over seeds, against floors.

`python -m analysis.generator_study RESULTS/generator_kernels --out DIR` writes `quality.csv`,
`quality.md` (one table per target), `figures/quality.png` (the mean and 95% CI of each
target's main metric relative to its data-vs-data floor, per kernel / schedule / operator) and,
when the sweep stored samples, `figures/samples_<target>.png` (2-D scatter, digit grids).
Compute functions are separate from the drawing and writing ones; no torch, no ray.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from drift_sweeps.results import read_table

GROUP_KEYS = ("target", "model", "kernel", "variant", "operator")
# metric -> its floor column (None: no floor); the first listed per target is the figure's metric
METRICS = {
    "final_sample_distance": "sample_distance_floor",
    "final_sliced_w2": "sliced_w2_floor",
    "final_mmd2": "mmd2_floor",
    "final_frechet_distance": "frechet_distance_floor",
    "final_class_coverage": None,
    "final_class_max_deviation": None,
}
MAIN_METRIC = {"digits": "final_frechet_distance"}  # others: final_sample_distance


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """Mean and Student-t confidence interval of finite values: (mean, low, high, n)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    if n == 1:
        return m, math.nan, math.nan, 1
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


def quality_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (seeds pooled): mean, CI and ratio to the floor of every metric."""
    keys = [k for k in GROUP_KEYS if k in trials.columns]
    trials = trials.assign(**{k: trials[k].fillna("-") for k in keys})
    rows = []
    for group, df in trials.groupby(keys, dropna=False):
        row = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        row["seeds"] = int(df["seed"].nunique()) if "seed" in df else len(df)
        for metric, floor in METRICS.items():
            if metric not in df or df[metric].isna().all():
                continue
            m, lo, hi, _ = mean_ci(df[metric].tolist())
            row[metric], row[metric + "_lo"], row[metric + "_hi"] = m, lo, hi
            if floor and floor in df and df[floor].notna().any():
                row[floor] = float(df[floor].mean())
                ratio = (df[metric] / df[floor]).tolist()
                rm, rlo, rhi, _ = mean_ci(ratio)
                row[metric + "_ratio"], row[metric + "_ratio_lo"], row[metric + "_ratio_hi"] = rm, rlo, rhi
        for extra in ("frechet_distance_gaussian", "frechet_distance_noise", "classifier_accuracy"):
            if extra in df and df[extra].notna().any():
                row[extra] = float(df[extra].mean())
        row["wall_time_s"] = float(df["wall_time_s"].sum()) if "wall_time_s" in df else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def markdown(table: pd.DataFrame) -> str:
    """Per target: configuration, mean [95% CI] of each metric, and the ratio to its floor."""
    out = []
    for target, df in table.groupby("target"):
        metric = MAIN_METRIC.get(target, "final_sample_distance")
        df = df.sort_values(metric + "_ratio" if metric + "_ratio" in df else metric)
        cols = [m for m in METRICS if m in df and df[m].notna().any()]
        head = ["kernel", "variant", "operator", "seeds"] + [m.replace("final_", "") for m in cols]
        out.append(f"#### {target}\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for _, r in df.iterrows():
            cells = [str(r.get("kernel")), str(r.get("variant")), str(r.get("operator")), str(r.get("seeds"))]
            for m in cols:
                cell = f"{_fmt(r[m])} [{_fmt(r[m + '_lo'])}, {_fmt(r[m + '_hi'])}]"
                if m + "_ratio" in r and pd.notna(r.get(m + "_ratio")):
                    cell += f" ({_fmt(r[m + '_ratio'])}x floor)"
                cells.append(cell)
            out.append("| " + " | ".join(cells) + " |")
        floors = [f"{f.replace('_floor', '')} {_fmt(df[f].iloc[0])}" for f in METRICS.values()
                  if f and f in df and df[f].notna().any()]
        extra = [f"{e} {_fmt(df[e].iloc[0])}" for e in ("frechet_distance_gaussian", "frechet_distance_noise",
                                                        "classifier_accuracy") if e in df and df[e].notna().any()]
        out.append("\nFloors (data vs data): " + ", ".join(floors) + ("; " + ", ".join(extra) if extra else "") + "\n")
    return "\n".join(out)


def draw(table: pd.DataFrame, path: Path) -> None:
    """Mean and 95% CI of each target's main metric over its floor, one panel per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = sorted(table["target"].unique())
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        df = table[table["target"] == target].sort_values(["kernel", "variant", "operator"])
        metric = MAIN_METRIC.get(target, "final_sample_distance")
        y, lo, hi = df[metric + "_ratio"], df[metric + "_ratio_lo"], df[metric + "_ratio_hi"]
        labels = [f"{k}\n{v}/{o}" for k, v, o in zip(df["kernel"], df["variant"], df["operator"])]
        colors = ["tab:blue" if k == "gaussian" else "tab:orange" for k in df["kernel"]]
        xs = np.arange(len(df))
        err = np.vstack([(y - lo).fillna(0).to_numpy(), (hi - y).fillna(0).to_numpy()])
        ax.bar(xs, y, yerr=err, color=colors, capsize=3)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(xs, labels, fontsize=7, rotation=90)
        ax.set_title(f"{target}: {metric.replace('final_', '')} / floor")
        ax.set_ylabel(f"{metric.replace('final_', '')} / data-vs-data floor (mean, 95% CI)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sample_panels(trials: pd.DataFrame, samples: pd.DataFrame) -> list[dict]:
    """Per configuration (lowest seed): its stored samples as an (n, D) array, with a label."""
    keys = [k for k in GROUP_KEYS if k in trials.columns]
    trials = trials.assign(**{k: trials[k].fillna("-") for k in keys})
    panels = []
    for group, df in trials.sort_values("seed").groupby(keys, dropna=False):
        tid = df["trial_id"].iloc[0]
        rows = samples[samples["trial_id"] == tid].sort_values("index")
        if rows.empty:
            continue
        label = ", ".join(str(g) for g in (group if isinstance(group, tuple) else (group,)))
        panels.append({"label": label, "target": df["target"].iloc[0], "x": np.stack(rows["x"].to_numpy())})
    return panels


def draw_samples(panels: list[dict], path: Path, per_grid: int = 16) -> None:
    """2-D samples as scatter plots; 64-D samples as a grid of 8x8 images; one panel per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        return
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, panels):
        x = p["x"]
        if x.shape[1] == 2:
            ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.6)
            ax.set_aspect("equal")
            ax.axis("on")
        elif x.shape[1] == 64:
            side = int(math.ceil(math.sqrt(min(per_grid, len(x)))))
            grid = np.zeros((side * 9, side * 9))
            for i, img in enumerate(x[: side * side]):
                r, c = divmod(i, side)
                grid[r * 9: r * 9 + 8, c * 9: c * 9 + 8] = np.clip(img.reshape(8, 8), 0, 1)
            ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(p["label"], fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep folder (e.g. results/generator_kernels)")
    p.add_argument("--out", required=True, help="folder for quality.csv, quality.md, figures/quality.png")
    args = p.parse_args(argv)
    table = quality_table(read_table(args.sweep, "trials"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "quality.csv", index=False)
    (out / "quality.md").write_text(markdown(table))
    draw(table, out / "figures" / "quality.png")
    try:
        samples = read_table(args.sweep, "samples")
    except FileNotFoundError:
        samples = None
    if samples is not None:
        trials = read_table(args.sweep, "trials")
        panels = sample_panels(trials, samples)
        for target in sorted({p["target"] for p in panels}):
            draw_samples([p for p in panels if p["target"] == target], out / "figures" / f"samples_{target}.png")
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
