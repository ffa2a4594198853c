"""T against the scaling axis (K_max by default): all groups on one panel, and one panel per group with every law."""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import style
from ..axis import axis_grid, axis_label
from ..fits import law_curve
from ..style import empty_panel, log_ticks, panel_title, save_figure
from ..tables import Analysis
from .common import common_eps, eps_text, group_handles, legend_below, palette_for, panel_grid


def scaling_data(analysis: Analysis) -> dict:
    """Per-trial points, per-(group, K) medians, fitted laws and theory curves for the T-vs-K_max figure."""
    axis = analysis.sweep.scaling_axis
    labels = analysis.labels
    t = analysis.times[~analysis.times["failed"]]
    points = pd.DataFrame({"group": t["group"], "K": t[axis] if axis else np.nan, "T": t["time"], "event": t["event"],
                           "seed": t["seed"], "trial_id": t["trial_id"]})
    grid = axis_grid(points["K"], analysis.axis)
    laws = (law_curve(analysis.fits, grid) if len(analysis.fits)
            else pd.DataFrame(columns=["group", "law", "best", "K", "T"]))
    theory = analysis.theory[np.isfinite(analysis.theory["T_theory"])] if len(analysis.theory) else analysis.theory
    per_k = analysis.per_k
    medians = pd.DataFrame({"group": per_k["group"], "K": per_k[axis] if axis else np.nan, "T": per_k["median_T"],
                            "lower_bound": per_k["median_T_lower_bound"]})
    fits = analysis.fits[["group", "law", "formula", "ok", "best", "delta_aic", "reason"]] if len(analysis.fits) else \
        pd.DataFrame(columns=["group", "law", "formula", "ok", "best", "delta_aic", "reason"])
    return {"points": points, "medians": medians, "laws": laws, "theory": theory, "labels": labels, "fits": fits,
            "legend_title": "", "eps": common_eps(analysis), "axis": axis, "order": analysis.group_order,
            "axis_label": axis_label(analysis.axis), "log_x": bool(len(grid) and grid.min() > 0),
            "not_varied": _not_varied(analysis.axis)}


def _not_varied(axis: str) -> str:
    return ("the sweep did not vary k_max: no T-vs-K_max figure" if axis == "k_max" else
            f"{axis} takes fewer than two values: no T-vs-{axis} figure")


_LAW_STYLES = {"exp_k2": "--", "exp_x2": "--", "exp_lin": (0, (1, 1)), "power": "-.", "log": (0, (5, 1, 1, 1, 1, 1))}


def _scaling_panel(ax: plt.Axes, data: dict, groups: Sequence[str], pal: dict, all_laws: bool) -> None:
    """Trials, fitted law(s) and theory of `groups` on one log-log panel."""
    pts = data["points"]
    rng = np.random.default_rng(0)
    n = len(groups)
    for i, g in enumerate(groups):
        c = pal[g]
        p = pts[pts["group"] == g]
        # seeds share K and groups share K: dodge groups and jitter seeds so no marker hides another
        shift = np.exp(0.04 * (i - (n - 1) / 2)) if n > 1 else 1.0
        x = p["K"].to_numpy(float) * shift * np.exp(rng.uniform(-0.012, 0.012, len(p)))
        conv = p["event"].to_numpy(bool)
        ax.scatter(x[conv], p["T"][conv], color=c, s=12, alpha=0.85, zorder=3, lw=0)
        ax.scatter(x[~conv], p["T"][~conv], facecolors="none", edgecolors=c, marker="^", s=20, lw=0.9, zorder=3)
        laws = data["laws"][data["laws"]["group"] == g]
        for name, lg in laws.groupby("law"):
            if bool(lg["best"].iloc[0]):
                ax.plot(lg["K"], lg["T"], color=c, lw=1.5, zorder=2)
            elif all_laws:
                ax.plot(lg["K"], lg["T"], color=c, lw=0.9, alpha=0.7, ls=_LAW_STYLES.get(name, "--"), zorder=2)
        th = data["theory"][data["theory"]["group"] == g] if len(data["theory"]) else data["theory"]
        if len(th):
            ax.plot(th["K"], th["T_theory"], color="0.15" if all_laws else c, ls=":", lw=1.2, zorder=2)
    ax.set_yscale("log")
    ks = sorted(pts["K"].dropna().unique())
    finite_t = pts["T"][np.isfinite(pts["T"]) & (pts["T"] > 0)]
    if len(finite_t):
        ax.set_ylim(finite_t.min() / 1.6, finite_t.max() * 2.5)
    if data.get("log_x", True):
        ax.set_xscale("log", base=2)
        if ks:
            ax.set_xlim(min(ks) / 1.25, max(ks) * 1.25)
        log_ticks(ax, "x", ks if len(ks) <= 10 else [k for k in ks if math.log2(k).is_integer()] or ks[::2])
    elif ks:  # an axis with values <= 0: linear
        pad = 0.06 * (max(ks) - min(ks) or 1.0)
        ax.set_xlim(min(ks) - pad, max(ks) + pad)
    log_ticks(ax, "y")
    ax.set_xlabel(data.get("axis_label", r"$K_{\max}$"))


def _scaling_groups(data: dict) -> list[str]:
    present = set(data["points"]["group"])
    return [g for g in dict.fromkeys(list(data.get("order", [])) + list(data["points"]["group"])) if g in present]


def _t_label(eps: Optional[float]) -> str:
    return f"convergence time T ({eps_text(eps)})"


_MARKER_KEY = [plt.Line2D([], [], color="0.3", marker="o", ms=3.5, lw=0, label="converged trial"),
               plt.Line2D([], [], color="0.3", marker="^", mfc="none", ms=4, lw=0, label="censored (T above)")]


def draw_scaling(data: dict, path_stem: str) -> list[str]:
    """T vs K_max, all groups on one panel: converged trials (dots), censored ones (open triangles at their
    lower bound), each group's best fitted law (solid) and the linear theory (dotted)."""
    groups = _scaling_groups(data) if data["axis"] is not None else []
    fig, ax = plt.subplots(figsize=(style.COLUMN, 2.5 + 0.16 * min(len(groups), style.MAX_LEGEND)),
                           layout="constrained")
    if not groups:
        empty_panel(ax, data.get("not_varied", _not_varied("k_max")))
        return save_figure(fig, path_stem)
    pal = palette_for(data, groups)
    _scaling_panel(ax, data, groups, pal, all_laws=False)
    ax.set_ylabel(_t_label(data["eps"]))
    handles = group_handles(groups, pal, data["labels"], marker="o", ms=3.5, lw=1.5)
    handles += _MARKER_KEY + [plt.Line2D([], [], color="0.3", lw=1.5, label="best fitted law"),
                              plt.Line2D([], [], color="0.3", lw=1.2, ls=":", label="linear theory")]
    legend_below(fig, handles, ncol=1 if max(len(h.get_label()) for h in handles) > 28 else 2)
    return save_figure(fig, path_stem)



def draw_scaling_by_group(data: dict, path_stem: str, ncols: int = 3) -> list[str]:
    """One panel per group: its trials, all three fitted laws (best solid, with delta-AIC in the legend)
    and the linear theory (black dotted)."""
    groups = _scaling_groups(data) if data["axis"] is not None else []
    ncols = min(ncols, max(len(groups), 1))
    fig, axes = panel_grid(len(groups), ncols, style.TEXT / ncols, 2.5)
    if not groups:
        empty_panel(axes[0, 0], data.get("not_varied", _not_varied("k_max")))
        return save_figure(fig, path_stem)
    pal = palette_for(data, groups)
    fits = data.get("fits", pd.DataFrame())
    for i, (ax, g) in enumerate(zip(axes.flat, groups)):
        _scaling_panel(ax, data, [g], pal, all_laws=True)
        panel_title(ax, data["labels"].get(g, g), style.TEXT / ncols)
        if i % ncols == 0:
            ax.set_ylabel(_t_label(data["eps"]))
        handles = []
        f = fits[fits["group"] == g] if len(fits) else fits
        for _, row in f.iterrows():
            if not row["ok"]:
                continue
            ls = "-" if row["best"] else _LAW_STYLES.get(row["law"], "--")
            handles.append(plt.Line2D([], [], color=pal[g], lw=1.5 if row["best"] else 0.9, ls=ls,
                                      label=f"{row['formula']}  (dAIC {row['delta_aic']:.1f})"))
        if not handles:
            reason = f["reason"].iloc[0] if len(f) else "no fit"
            handles.append(plt.Line2D([], [], color="none", label="\n".join(textwrap.wrap(f"no fit: {reason}", 30))))
        ax.legend(handles=handles, fontsize=6, loc="upper left", frameon=True, framealpha=0.85, edgecolor="none")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    legend_below(fig, _MARKER_KEY + [plt.Line2D([], [], color="0.15", ls=":", lw=1.2, label="linear theory")], 3)
    return save_figure(fig, path_stem)
