"""The ablation view: T per group at one value of the axis, and the fraction of trials converged."""

from __future__ import annotations

from typing import Optional

import matplotlib.pyplot as plt
import numpy as np

from .. import style
from ..axis import axis_label
from ..labels import fmt
from ..style import empty_panel, log_ticks, save_figure
from ..tables import Analysis
from .common import common_eps, eps_text, palette_for


def ablation_data(analysis: Analysis, k: Optional[float] = None) -> dict:
    """Per-trial times and per-group medians / fractions converged at one k_max (default K_ref)."""
    axis = analysis.sweep.scaling_axis
    k = analysis.k_ref if k is None else k
    t, pk = analysis.times, analysis.per_k
    if axis and k is not None:
        t, pk = t[t[axis] == k], pk[pk[axis] == k]
    return {"trials": t[~t["failed"]], "summary": pk, "labels": analysis.labels, "legend_title": "",
            "k": k, "eps": common_eps(analysis), "baseline": analysis.baseline, "order": analysis.group_order,
            "axis_label": axis_label(analysis.axis)}


def draw_ablation(data: dict, path_stem: str) -> list[str]:
    """Left: T per group at one k_max (dots: converged trials, '>': censored, bar: KM median and CI).
    Right: fraction of trials converged per group."""
    s = data["summary"]
    present = set(s["group"])
    groups = [g for g in dict.fromkeys(list(data.get("order", [])) + list(s["group"])) if g in present]
    n = max(len(groups), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(style.TEXT, 0.28 * n + 1.0), sharey=True, layout="constrained",
                                   gridspec_kw={"width_ratios": [3, 1]})
    if not groups:
        empty_panel(ax1, "no groups at this k_max")
        return save_figure(fig, path_stem)
    pal = palette_for(data, groups)
    y = {g: i for i, g in enumerate(groups)}
    tr = data["trials"]
    rng = np.random.default_rng(0)
    for g, p in tr.groupby("group", sort=False):
        if g not in y:
            continue
        yy = y[g] + rng.uniform(-0.15, 0.15, len(p))
        ev = p["event"].to_numpy(bool)
        ax1.scatter(p["time"][ev], yy[ev], color=pal[g], s=10, alpha=0.85, zorder=3, lw=0)
        ax1.scatter(p["time"][~ev], yy[~ev], color=pal[g], marker=">", s=16, facecolors="none", zorder=3, lw=0.8)
    times = tr["time"][np.isfinite(tr["time"]) & (tr["time"] > 0)]
    log_x = bool(len(times) and times.max() / max(times.min(), 1e-12) > 20)
    for _, row in s.iterrows():
        _summary_row(ax1, ax2, row, y[row["group"]], pal[row["group"]], times.max() if len(times) else 1)
    ax1.set_yticks(range(len(groups)), [data["labels"].get(g, g) for g in groups])
    ax1.invert_yaxis()
    if not len(times):
        ax1.text(0.5, 0.5, "no convergence or censoring times (the trials recorded no curves)", fontsize=7,
                 color="0.35", ha="center", va="center", transform=ax1.transAxes)
        ax1.set_xticks([])
    if log_x:
        ax1.set_xscale("log")
        log_ticks(ax1, "x")
    elif len(times):
        ax1.set_xlim(0, times.max() * 1.08)
    ax1.set_xlabel(f"convergence time T ({eps_text(data['eps'])})")
    k = data["k"]
    ax1.set_title((f"at {data.get('axis_label', axis_label(None))} = {fmt(k)}; " if k is not None else "")
                  + "bar: median, line: 95% CI, open >: censored")
    ax2.set_xlim(0, 1.2)
    ax2.set_xticks([0, 0.5, 1.0], ["0", "50%", "100%"])
    ax2.set_xlabel("fraction converged")
    ax1.grid(True, axis="x")
    ax1.grid(False, axis="y")
    ax2.grid(False)
    return save_figure(fig, path_stem)


def _summary_row(ax1: plt.Axes, ax2: plt.Axes, row, i: int, c: str, t_max: float) -> None:
    """One group of the ablation view: its median T and CI (or a censored median) on the left, at row i, and
    its fraction converged on the right; an open CI runs to t_max."""
    if np.isfinite(row["median_T"]) and bool(row.get("median_T_lower_bound", False)):
        ax1.plot([row["median_T"]] * 2, [i - 0.3, i + 0.3], color=c, lw=0.9, ls="--")
        ax1.annotate("median above", xy=(row["median_T"], i - 0.33), fontsize=6, color=c, ha="right", va="bottom")
    elif np.isfinite(row["median_T"]):
        ax1.plot([row["median_T"]] * 2, [i - 0.3, i + 0.3], color=c, lw=2.0)
        if np.isfinite(row.get("median_T_lo", np.nan)):
            hi = row["median_T_hi"] if np.isfinite(row["median_T_hi"]) else t_max
            ax1.plot([row["median_T_lo"], hi], [i, i], color=c, lw=0.9, alpha=0.8)
    ax2.barh(i, row["frac_converged"], color=c, alpha=0.9, height=0.6)
    ax2.text(min(row["frac_converged"], 0.97) + 0.02, i, f"{row['frac_converged']:.0%}", va="center", fontsize=6)
