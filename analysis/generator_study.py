"""Generator studies: final sample quality per configuration, mean and 95% CI over seeds, against floors.

`analysis.report` adds this as the "Sample quality" section of a sweep whose trials train a generator;
`python -m analysis.generator_study SWEEP --out DIR` writes the same files on their own: `quality.csv`,
`quality.md` (one table per target, `analysis.formatting`), `figures/quality.{png,pdf,svg}` (the mean and
95% CI of each target's main metric relative to its data-vs-data floor, per configuration) and, when the
sweep stored samples, `figures/samples_<target>.{png,pdf,svg}` (2-D scatter, digit grids).  Means and
intervals are `analysis.stats.mean_ci`; metric and floor names come from `drift_sweeps.spine`.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from drift_sweeps.results import read_table
from drift_sweeps.spine.metrics import BY_NAME, FINAL_PREFIX, FLOOR_SUFFIX
from drift_sweeps.spine.record import FLOOR_FIELDS

from . import style
from .formatting import fmt_number, markdown
from .stats import mean_ci

GROUP_KEYS = ("target", "model", "kernel", "variant", "operator")
SHOWN_KEYS = ("kernel", "variant", "operator")  # what a row of a target's table is named by
# the quality metrics shown, in table order (each a `spine.metrics` entry; its floor is the registry's)
QUALITY = ("sample_distance", "sliced_w2", "mmd2", "frechet_distance", "class_coverage", "class_max_deviation")
METRICS = {FINAL_PREFIX + m: (m + FLOOR_SUFFIX if BY_NAME[m].floor else None) for m in QUALITY}
BASELINES = tuple(f for f in FLOOR_FIELDS if not f.endswith(FLOOR_SUFFIX))  # digits: Gaussian, noise, classifier
MAIN_METRIC = {"digits": "final_frechet_distance"}  # the figure's metric; others: final_sample_distance


def is_generator_sweep(trials: pd.DataFrame) -> bool:
    """Whether the trials train a generator (the `model` key is not `particles`)."""
    return "model" in trials and bool((trials["model"].fillna("particles") != "particles").any())


def _groups(trials: pd.DataFrame):
    """(configuration as a dict, its trials) per configuration, seeds pooled; missing keys read '-'."""
    keys = [k for k in GROUP_KEYS if k in trials.columns]
    trials = trials.assign(**{k: trials[k].fillna("-") for k in keys})
    for group, df in trials.sort_values("seed" if "seed" in trials else keys).groupby(keys, dropna=False):
        yield dict(zip(keys, group if isinstance(group, tuple) else (group,))), df


def quality_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (seeds pooled): mean, CI and ratio to the floor of every metric."""
    rows = []
    for row, df in _groups(trials):
        row["seeds"] = int(df["seed"].nunique()) if "seed" in df else len(df)
        for metric, floor in METRICS.items():
            if metric not in df or df[metric].isna().all():
                continue
            row[metric], row[metric + "_lo"], row[metric + "_hi"] = mean_ci(df[metric])
            if floor and floor in df and df[floor].notna().any():
                row[floor] = float(df[floor].mean())
                ratio = df[metric] / df[floor]
                row[metric + "_ratio"], row[metric + "_ratio_lo"], row[metric + "_ratio_hi"] = mean_ci(ratio)
        for extra in BASELINES:
            if extra in df and df[extra].notna().any():
                row[extra] = float(df[extra].mean())
        row["wall_time_s"] = float(df["wall_time_s"].sum()) if "wall_time_s" in df else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _main_metric(target: str) -> str:
    return MAIN_METRIC.get(target, FINAL_PREFIX + "sample_distance")


def _short(metric: str) -> str:
    return metric[len(FINAL_PREFIX):]


def quality_display(df: pd.DataFrame) -> pd.DataFrame:
    """One target's rows for `formatting.markdown`: each metric as mean [lo, hi], then its mean over the floor."""
    metric = _main_metric(str(df["target"].iloc[0]))
    df = df.sort_values(metric + "_ratio" if metric + "_ratio" in df else metric)
    out = pd.DataFrame({k: df[k].astype(str) if k in df else "-" for k in SHOWN_KEYS}, index=df.index)
    out["seeds"] = df["seeds"]
    for m in (m for m in METRICS if m in df and df[m].notna().any()):
        out[_short(m)], out[_short(m) + "_lo"], out[_short(m) + "_hi"] = df[m], df[m + "_lo"], df[m + "_hi"]
        if m + "_ratio" in df and df[m + "_ratio"].notna().any():
            out[f"{_short(m)} / floor"] = df[m + "_ratio"]
    return out


def _reference_line(df: pd.DataFrame) -> str:
    """The target's data-vs-data floors and the digit baselines, as one line."""
    def named(cols):
        return [f"{c.replace(FLOOR_SUFFIX, '')} {fmt_number(df[c].iloc[0])}" for c in cols
                if c in df and df[c].notna().any()]

    floors = named([f for f in METRICS.values() if f])
    extra = named(BASELINES)
    return "Floors (data vs data): " + (", ".join(floors) or "none") + ("; " + ", ".join(extra) if extra else "")


def quality_markdown(table: pd.DataFrame, heading: str = "####") -> str:
    """Per target: configuration, mean [95% CI] of each metric and its ratio to the floor, then the floors."""
    out = []
    for target, df in table.groupby("target"):
        out += [f"{heading} {target}", "", markdown(quality_display(df)), "", _reference_line(df), ""]
    return "\n".join(out)


def quality_figure_data(table: pd.DataFrame) -> list[dict]:
    """Per target: its main metric over the floor (mean and CI) per configuration, and the configurations' names."""
    out = []
    for target, df in table.groupby("target", sort=True):
        df = df.sort_values([k for k in SHOWN_KEYS if k in df])
        metric = _main_metric(str(target))
        if metric + "_ratio" not in df:
            continue
        out.append({"target": target, "metric": _short(metric), "ratio": df[metric + "_ratio"].to_numpy(float),
                    "lo": df[metric + "_ratio_lo"].to_numpy(float), "hi": df[metric + "_ratio_hi"].to_numpy(float),
                    "labels": [f"{r.get('kernel', '-')}\n{r.get('variant', '-')}/{r.get('operator', '-')}"
                               for r in df.to_dict("records")],
                    "kernels": [str(k) for k in df.get("kernel", pd.Series("-", index=df.index))]})
    return out


def draw_quality(data: list[dict], path_stem: str) -> list[str]:
    """Bars: each configuration's main metric over its floor (mean, 95% CI), one panel per target; 1 dashed."""
    import matplotlib.pyplot as plt

    n = max(len(data), 1)
    fig, axes = plt.subplots(1, n, figsize=(style.TEXT, 2.8), squeeze=False, layout="constrained")
    if not data:
        style.empty_panel(axes[0, 0], "no metric with a data-vs-data floor in the trials")
        return style.save_figure(fig, path_stem)
    pal = style.palette([k for d in data for k in d["kernels"]])
    for ax, d in zip(axes[0], data):
        xs = np.arange(len(d["ratio"]))
        err = np.nan_to_num(np.vstack([d["ratio"] - d["lo"], d["hi"] - d["ratio"]]))
        ax.bar(xs, d["ratio"], yerr=err, color=[pal[k] for k in d["kernels"]], capsize=2, width=0.7)
        ax.axhline(1.0, color="0.2", lw=0.8, ls="--")
        ax.set_xticks(xs, d["labels"], fontsize=6, rotation=90)
        ax.grid(False, axis="x")
        style.panel_title(ax, f"{d['target']}: {d['metric']} / floor", style.TEXT / n)
    axes[0, 0].set_ylabel("metric / data-vs-data floor\n(mean, 95% CI over seeds)")
    return style.save_figure(fig, path_stem)


def sample_panels(trials: pd.DataFrame, samples: pd.DataFrame) -> list[dict]:
    """Per configuration (lowest seed): its stored samples as an (n, D) array, with a label."""
    panels = []
    for group, df in _groups(trials):
        rows = samples[samples["trial_id"] == df["trial_id"].iloc[0]].sort_values("index")
        if not rows.empty:
            panels.append({"label": ", ".join(str(v) for v in group.values()), "target": df["target"].iloc[0],
                           "x": np.stack(rows["x"].to_numpy())})
    return panels


def _digit_grid(x: np.ndarray, per_grid: int) -> np.ndarray:
    """Up to `per_grid` 8x8 images tiled in a square, one blank pixel between them."""
    side = int(math.ceil(math.sqrt(min(per_grid, len(x)))))
    grid = np.zeros((side * 9, side * 9))
    for i, img in enumerate(x[: side * side]):
        r, c = divmod(i, side)
        grid[r * 9: r * 9 + 8, c * 9: c * 9 + 8] = np.clip(img.reshape(8, 8), 0, 1)
    return grid


def draw_samples(panels: list[dict], path_stem: str, per_grid: int = 16) -> list[str]:
    """2-D samples as scatter plots; 64-D samples as a grid of 8x8 images; one panel per configuration."""
    import matplotlib.pyplot as plt

    cols = max(min(4, len(panels)), 1)
    rows = max(math.ceil(len(panels) / cols), 1)
    width = style.TEXT / cols
    fig, axes = plt.subplots(rows, cols, figsize=(style.TEXT, width * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, p in zip(axes.flat, panels):
        x = p["x"]
        if x.shape[1] == 2:
            ax.axis("on")
            ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.6, lw=0, color=style.OKABE_ITO[0])
            ax.set_aspect("equal")
        elif x.shape[1] == 64:
            ax.imshow(_digit_grid(x, per_grid), cmap="gray_r", vmin=0, vmax=1)
        style.panel_title(ax, p["label"], width)
    return style.save_figure(fig, path_stem)


def read_samples(sweep_root: str) -> Optional[pd.DataFrame]:
    """The sweep's `samples` table, None when it stored none."""
    try:
        return read_table(sweep_root, "samples")
    except FileNotFoundError:
        return None


def write_quality(trials: pd.DataFrame, samples: Optional[pd.DataFrame], out_dir: str) -> dict:
    """Write quality.csv, quality.md and the figures into out_dir; returns the table, its Markdown (one `###`
    heading per target), the written files by name and the figures by name (for `analysis.report`)."""
    table = quality_table(trials)
    os.makedirs(out_dir, exist_ok=True)
    files = {"quality.csv": os.path.join(out_dir, "quality.csv"), "quality.md": os.path.join(out_dir, "quality.md")}
    table.to_csv(files["quality.csv"], index=False)
    with open(files["quality.md"], "w") as fh:
        fh.write(quality_markdown(table))
    fig_dir = os.path.join(out_dir, "figures")
    figures = {"quality": draw_quality(quality_figure_data(table), os.path.join(fig_dir, "quality"))}
    panels = sample_panels(trials, samples) if samples is not None else []
    for target in sorted({p["target"] for p in panels}):
        figures[f"samples_{target}"] = draw_samples([p for p in panels if p["target"] == target],
                                                    os.path.join(fig_dir, f"samples_{target}"))
    return {"table": table, "markdown": quality_markdown(table, "###"), "files": files, "figures": figures}


def quality_section(quality: dict, figure: Callable[[str, str], str]) -> list[str]:
    """The report's "Sample quality" lines; `figure(name, alt)` links a drawn figure."""
    lines = ["## Sample quality", "",
             "Final sample quality per configuration: the mean over seeds of each metric at the last evaluation "
             "with a 95% Student-t interval, and its mean ratio to the data-vs-data floor (the metric between two "
             "independent data draws: 1 is as good as the data themselves).", "",
             quality["markdown"], figure("quality", "sample quality relative to the floor"), ""]
    for name in (n for n in quality["figures"] if n.startswith("samples_")):
        lines += [figure(name, f"generated samples, {name[len('samples_'):]}"), ""]
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point: the quality files of one sweep, without the rest of the report."""
    p = argparse.ArgumentParser(prog="python -m analysis.generator_study", description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep folder (e.g. results/generator_kernels)")
    p.add_argument("--out", required=True, help="folder for quality.csv, quality.md and figures/")
    args = p.parse_args(argv)
    quality = write_quality(read_table(args.sweep, "trials"), read_samples(args.sweep), args.out)
    print(quality_markdown(quality["table"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
