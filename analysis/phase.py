"""Mode-collapse phase diagrams: modes covered and mode-mass error against the bandwidth (temperature).

`python -m analysis.phase SWEEP [SWEEP ...] --out DIR` reads the trials of one or more sweeps on targets with
known modes (e.g. `mode_collapse_cpu` and `mode_collapse_sinkhorn_cpu`, read together), and writes:

- `phase.csv` / `phase.md`: per target, kernel, variant (the normalisation) and bandwidth, the seeds' modes
  covered (mean, min, of how many), the mode-mass error (mean, range, 95% t interval) and the high-quality
  share;
- `onsets.md`: per target, kernel and variant, the bandwidth at which the modes start to be lost when the
  bandwidth is lowered, by each of the two criteria below (`collapse_onsets`);
- `figures/samples_<target>_<kernel>.*` (when the sweeps stored samples): seed 0's final samples, one row per
  variant, one column per bandwidth;
- `figures/phase_<target>.{png,pdf,svg}`: one column per kernel; top row the fraction of modes covered, bottom
  row the mode-mass error, against the bandwidth on a log axis, one line per variant, seeds as dots.

Two criteria per bandwidth, each required of every seed: `all_modes`, every mode a data draw covers
(`modes_covered_floor`) is covered (enough samples within 3 std: a blurred law fails it as well as a collapsed
one); `balanced`, the mode-mass error is at most half a mode's weight, 1 / (2K) (nearest-mode masses: no mode
has lost or gained half its mass; blur alone does not fail it, collapse does), with at least REACHED = 5% of
the samples within 3 std of a mode (a cloud stalled away from every mode splits its nearest-mode masses
evenly; it fails).  Scanning down from the largest
bandwidth that meets a criterion, the onset is the first bandwidth that does not: the criterion fails at or
below it (for that grid) and holds at the grid point above.  Compute functions are
separate from drawing and writing; no torch, no ray.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from drift_sweeps.results import read_table

from . import style
from .formatting import markdown
from .plots.common import sample_panel

PANEL_KEYS = ("target", "kernel")  # one column of the figure per pair
LINE_KEY = "variant"  # one line per normalisation / operator arm
KEYS = PANEL_KEYS + (LINE_KEY, "bandwidth")
VARIANT_ORDER = ("per-side", "joint", "Sinkhorn")  # the order; others follow alphabetically
OK_STATUSES = ("converged", "censored")  # failed trials carry no final metrics
REACHED = 0.05  # balanced masses also need this share of samples within 3 std: a cloud stalled between the modes
#                 splits its nearest-mode masses evenly without having reached any mode


def _t_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) with a Student-t interval over independent seeds; NaN bounds for fewer than two."""
    from scipy import stats

    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def phase_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, kernel, variant, bandwidth), seeds pooled: modes covered (mean, min, of how many,
    the fraction), mode-mass error (mean, 95% t interval, the data-vs-data floor) and the high-quality share."""
    tr = trials[trials["status"].isin(OK_STATUSES)]
    tr = tr.assign(variant=tr["variant"].fillna(tr.get("operator", "-")))
    rows = []
    for key, g in tr.groupby(list(KEYS), sort=True):
        modes = g["final_modes_covered"].to_numpy(float)
        total = float(g["modes_covered_floor"].max())
        mme, lo, hi = _t_ci(g["final_mode_mass_error"].to_numpy(float))
        rows.append({**dict(zip(KEYS, key)), "seeds": len(g), "modes_total": total,
                     "modes_covered": float(modes.mean()), "modes_covered_min": float(modes.min()),
                     "covered_fraction": float(modes.mean() / total) if total > 0 else math.nan,
                     "all_modes": bool((modes >= total).all()),
                     "balanced": bool(((g["final_mode_mass_error"].to_numpy(float) <= 0.5 / total)
                                       & (g["final_high_quality_share"].to_numpy(float) >= REACHED)).all()),
                     "mode_mass_error": mme, "mode_mass_error_lo": lo, "mode_mass_error_hi": hi,
                     "mode_mass_error_min": float(g["final_mode_mass_error"].min()),
                     "mode_mass_error_max": float(g["final_mode_mass_error"].max()),
                     "mode_mass_error_floor": float(g["mode_mass_error_floor"].mean()),
                     "high_quality_share": float(g["final_high_quality_share"].mean())})
    return pd.DataFrame(rows)


CRITERIA = {"balanced": "mode masses within 1/(2K)", "all_modes": "every mode covered"}


def collapse_onsets(table: pd.DataFrame, criterion: str = "balanced") -> pd.DataFrame:
    """Per (target, kernel, variant): where lowering the bandwidth starts to fail `criterion` (a boolean column
    of `phase_table`: balanced or all_modes).

    `kept_down_to`: the smallest bandwidth of the run of bandwidths, from the largest that meets the criterion
    downwards, that all meet it; `onset`: the next bandwidth below it (the criterion fails there), NaN when every
    smaller bandwidth meets it; `estimate`: the geometric mean of the two (the grid's best guess);
    `verdict`: the same in words."""
    rows = []
    for key, g in table.groupby(list(PANEL_KEYS) + [LINE_KEY], sort=True):
        g = g.sort_values("bandwidth", ascending=False)
        h, keep = g["bandwidth"].to_numpy(float), g[criterion].to_numpy(bool)
        row = {**dict(zip(list(PANEL_KEYS) + [LINE_KEY], key)), "criterion": CRITERIA.get(criterion, criterion)}
        first = int(np.argmax(keep)) if keep.any() else None
        if first is None:
            row.update(kept_down_to=math.nan, onset=math.nan, estimate=math.nan,
                       verdict=f"fails at every bandwidth ({h.min():g}-{h.max():g})")
        else:
            lost = np.flatnonzero(~keep[first:])
            if lost.size == 0:
                row.update(kept_down_to=h[-1], onset=math.nan, estimate=math.nan,
                           verdict=f"holds down to h = {h[-1]:g}")
            else:
                kept, onset = h[first + lost[0] - 1], h[first + lost[0]]
                row.update(kept_down_to=kept, onset=onset, estimate=math.sqrt(kept * onset),
                           verdict=f"fails at h = {onset:g} (holds at {kept:g})")
            if first > 0:
                row["verdict"] += f"; also fails at h >= {h[first - 1]:g}"
        rows.append(row)
    return pd.DataFrame(rows)


def _variants(table: pd.DataFrame) -> list[str]:
    """The variants present, in VARIANT_ORDER (case-insensitive: an arm named by its operator, `sinkhorn`, sorts
    as `Sinkhorn`), the others after them alphabetically."""
    rank = {v.lower(): i for i, v in enumerate(VARIANT_ORDER)}
    present = list(dict.fromkeys(table[LINE_KEY]))
    return sorted(present, key=lambda v: (rank.get(v.lower(), len(rank)), v))


def draw(table: pd.DataFrame, trials: Optional[pd.DataFrame], onsets: pd.DataFrame, stem: str,
         formats: Sequence[str] = style.FORMATS) -> list[str]:
    """The phase diagram: per (target, kernel) column, the fraction of modes covered (top) and the mode-mass
    error (bottom) against the bandwidth, one line per variant (mean over seeds), seeds as dots, the onset of
    the first variant (per-side; the `balanced` criterion) as a dashed line."""
    plt = style.plt
    panels = list(table.groupby(list(PANEL_KEYS), sort=True).groups)
    variants = _variants(table)
    colours = style.palette(variants)
    width = min(style.TEXT * 1.5, 2.3 * len(panels))
    fig, axes = plt.subplots(2, len(panels), figsize=(width, 4.2), squeeze=False, sharex="col")
    offsets = dict(zip(variants, np.linspace(-0.04, 0.04, len(variants))))  # dots side by side (log x)
    for col, panel in enumerate(panels):
        top, bottom = axes[0, col], axes[1, col]
        sel = np.logical_and.reduce([table[k] == v for k, v in zip(PANEL_KEYS, panel)])
        for variant in variants:
            d = table[sel & (table[LINE_KEY] == variant)].sort_values("bandwidth")
            if d.empty:
                continue
            c = colours[variant]
            top.plot(d["bandwidth"], d["covered_fraction"], "-o", color=c, label=variant, ms=3)
            bottom.plot(d["bandwidth"], d["mode_mass_error"], "-o", color=c, label=variant, ms=3)
            if trials is not None:
                t = trials[np.logical_and.reduce([trials[k] == v for k, v in zip(PANEL_KEYS, panel)])
                           & (trials[LINE_KEY] == variant) & trials["status"].isin(OK_STATUSES)]
                x = t["bandwidth"].to_numpy(float) * 10 ** offsets[variant]
                top.scatter(x, t["final_modes_covered"] / t["modes_covered_floor"], s=6, color=c, alpha=0.45, lw=0)
                bottom.scatter(x, t["final_mode_mass_error"], s=6, color=c, alpha=0.45, lw=0)
        floor = table[sel]["mode_mass_error_floor"].mean()
        bottom.axhline(floor, color="0.4", lw=0.7, ls=":", label="data vs data")
        o = onsets[np.logical_and.reduce([onsets[k] == v for k, v in zip(PANEL_KEYS, panel)])
                   & (onsets[LINE_KEY] == variants[0])]
        if len(o) and np.isfinite(o["estimate"].iloc[0]):
            for ax in (top, bottom):
                ax.axvline(o["estimate"].iloc[0], color=colours[variants[0]], lw=0.8, ls="--",
                           label=f"{variants[0]} onset (grid midpoint)")
        total = int(table[sel]["modes_total"].max())
        style.panel_title(top, f"{panel[0]}, {panel[1]} ({total} modes)", width / len(panels))
        top.set_ylim(-0.03, 1.05)
        for ax in (top, bottom):
            ax.set_xscale("log")
        style.log_ticks(bottom, "x", sorted(table["bandwidth"].unique()))
        bottom.set_xlabel("bandwidth (temperature) h")
        if col == 0:
            top.set_ylabel("modes covered / modes")
            bottom.set_ylabel("mode-mass error")
    legend = {}
    for ax in axes[1]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return style.save_figure(fig, stem, formats)


def sample_grid(trials: pd.DataFrame, samples: pd.DataFrame, target: str, kernel: str,
                seed: int = 0) -> dict[tuple[str, float], np.ndarray]:
    """(variant, bandwidth) -> the stored final samples (n, 2) of one seed's trial on (target, kernel)."""
    t = trials[(trials["target"] == target) & (trials["kernel"] == kernel) & (trials["seed"] == seed)
               & trials["status"].isin(OK_STATUSES)]
    out = {}
    for _, r in t.iterrows():
        rows = samples[samples["trial_id"] == r["trial_id"]]
        if "sweep" in samples and "sweep" in r:
            rows = rows[rows["sweep"] == r["sweep"]]
        if len(rows):
            out[(r[LINE_KEY], float(r["bandwidth"]))] = np.stack(rows.sort_values("index")["x"].to_numpy())
    return out


def draw_sample_grid(grid: dict[tuple[str, float], np.ndarray], title: str, stem: str,
                     formats: Sequence[str] = style.FORMATS) -> list[str]:
    """One scatter per (variant row, bandwidth column), the same limits everywhere."""
    plt = style.plt
    variants = _variants(pd.DataFrame({LINE_KEY: [k[0] for k in grid]}))
    bandwidths = sorted({k[1] for k in grid})
    allx = np.concatenate(list(grid.values()))
    lim = float(np.nanmax(np.abs(allx))) * 1.05 if allx.size else 1.0
    lim = min(max(lim, 1.0), 4.0)
    fig, axes = plt.subplots(len(variants), len(bandwidths), figsize=(1.15 * len(bandwidths) + 0.4,
                                                                      1.15 * len(variants) + 0.4), squeeze=False)
    for i, v in enumerate(variants):
        for j, h in enumerate(bandwidths):
            ax = axes[i, j]
            x = grid.get((v, h))
            if x is not None:
                ax.scatter(x[:, 0], x[:, 1], s=1.5, lw=0, alpha=0.7, color=style.palette(variants)[v])
            sample_panel(ax, lim)
            if i == 0:
                ax.set_title(f"h = {h:g}")
            if j == 0:
                ax.set_ylabel(v)
    fig.suptitle(title)
    fig.tight_layout()
    return style.save_figure(fig, stem, formats)


def onsets_markdown(onsets: pd.DataFrame) -> str:
    """The onsets as a Markdown table."""
    cols = list(PANEL_KEYS) + [LINE_KEY, "criterion", "kept_down_to", "onset", "estimate", "verdict"]
    return markdown(onsets[cols].reset_index(drop=True))


def phase_markdown(table: pd.DataFrame) -> str:
    """The phase table in words: per row 'covered/total (min)', the mode-mass error (mean, and its 95% t
    interval from 3 seeds on; with 2 seeds the interval is uninformative and the two values are shown)."""
    def err(r: pd.Series) -> str:
        if r["seeds"] < 3 or not np.isfinite(r["mode_mass_error_lo"]):
            spread = f" (seeds {r['mode_mass_error_min']:.3f}-{r['mode_mass_error_max']:.3f})" if r["seeds"] > 1 else ""
            return f"{r['mode_mass_error']:.3f}{spread}"
        return f"{r['mode_mass_error']:.3f} [{r['mode_mass_error_lo']:.3f}, {r['mode_mass_error_hi']:.3f}]"

    shown = pd.DataFrame({
        **{k: table[k] for k in KEYS}, "seeds": table["seeds"],
        "modes covered (mean, min)": [f"{r.modes_covered:.3g} / {r.modes_total:.0f} (min {r.modes_covered_min:.0f})"
                                      for r in table.itertuples()],
        "mode-mass error": [err(r) for _, r in table.iterrows()],
        "high-quality share": table["high_quality_share"]})
    return markdown(shown.reset_index(drop=True))


def read_trials(sweeps: Sequence[str]) -> pd.DataFrame:
    """The trials tables of several sweeps, stacked (each row keeps its `sweep` column); a sweep with no finished
    trial yet is skipped with a warning, FileNotFoundError when none has one."""
    frames = []
    for sweep in sweeps:
        try:
            frames.append(read_table(sweep, "trials"))
        except FileNotFoundError as err:
            logging.getLogger(__name__).warning("skipped: %s", err)
    if not frames:
        raise FileNotFoundError(f"no trials table in {', '.join(sweeps)}")
    return pd.concat(frames, ignore_index=True)


def read_samples(sweeps: Sequence[str]) -> Optional[pd.DataFrame]:
    """The samples tables of the sweeps that stored samples, stacked with a `sweep` column; None when none did."""
    frames = []
    for sweep in sweeps:
        try:
            frames.append(read_table(sweep, "samples").assign(sweep=os.path.basename(os.path.normpath(sweep))))
        except FileNotFoundError:
            continue
    return pd.concat(frames, ignore_index=True) if frames else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m analysis.phase", description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="+", help="sweep folders on targets with known modes, read together")
    p.add_argument("--out", required=True, help="folder for phase.csv, phase.md, onsets.md, figures/phase_<target>.*")
    p.add_argument("--png-only", action="store_true", help="write the figure as PNG only (for docs/)")
    args = p.parse_args(argv)
    trials = read_trials(args.sweeps)
    trials = trials.assign(variant=trials["variant"].fillna(trials["operator"]))
    table = phase_table(trials)
    if table.empty:
        print("error: no finished trials with mode metrics", file=sys.stderr)
        return 2
    onsets = pd.concat([collapse_onsets(table, c) for c in CRITERIA], ignore_index=True)
    os.makedirs(args.out, exist_ok=True)
    table.to_csv(os.path.join(args.out, "phase.csv"), index=False)
    with open(os.path.join(args.out, "phase.md"), "w") as fh:
        fh.write(phase_markdown(table) + "\n")
    with open(os.path.join(args.out, "onsets.md"), "w") as fh:
        fh.write(onsets_markdown(onsets) + "\n")
    stem = os.path.join(args.out, "figures", "phase")
    formats = ("png",) if args.png_only else style.FORMATS
    onsets_balanced = collapse_onsets(table)
    paths = []
    for target in sorted(table["target"].unique()):  # one figure per target: a column per kernel
        paths += draw(table[table["target"] == target], trials, onsets_balanced, f"{stem}_{target}", formats)
    samples = read_samples(args.sweeps)
    if samples is not None:
        for target, kernel in trials[list(PANEL_KEYS)].drop_duplicates().itertuples(index=False):
            grid = sample_grid(trials, samples, target, kernel)
            if grid:
                paths += draw_sample_grid(grid, f"{target}, {kernel} kernel: final samples (seed 0)",
                                          os.path.join(args.out, "figures", f"samples_{target}_{kernel}"), formats)
    print(onsets_markdown(onsets))
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
