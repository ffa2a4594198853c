"""Error curves: worst_rel_error against t per group (and per value of the axis), median and min-max band."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .. import style
from ..labels import fmt
from ..style import empty_panel, log_ticks, panel_title, save_figure
from ..tables import Analysis
from .common import group_handles, legend_below, palette_for, panel_grid


def error_curve_data(analysis: Analysis) -> dict:
    """worst_rel_error against t per group (and per k_max when swept): median over seeds and the min-max
    band, on the union of the evaluation times (a trial counts at a time only while it ran)."""
    axis = analysis.sweep.scaling_axis
    t = analysis.times[~analysis.times["failed"]]
    cols = ["trial_id", "group", "seed"] + ([axis] if axis else [])
    c = analysis.sweep.curves[["trial_id", "t", "worst_rel_error"]].merge(t[cols], on="trial_id")
    c = c[np.isfinite(c["worst_rel_error"]) & (c["worst_rel_error"] > 0)]
    by = ["group", *([axis] if axis else []), "t"]
    band = (c.groupby(by, sort=True)["worst_rel_error"].agg(median="median", lo="min", hi="max", n="count")
            .reset_index())
    if not axis:
        band["K"] = np.nan
    else:
        band = band.rename(columns={axis: "K"})
    eps_vals = sorted(t["eps"].dropna().unique())
    return {"band": band, "curves": c, "labels": analysis.labels, "order": analysis.group_order,
            "axis": axis, "eps": eps_vals, "n_seeds": int(t.groupby("group")["seed"].nunique().max()) if len(t) else 0,
            "symbol": "K" if analysis.axis == "k_max" else analysis.axis}


def draw_error_curves(data: dict, path_stem: str, ncols: int = 3) -> list[str]:
    """Without a k_max axis: one panel, a line per group.  With one: a panel per group, a line per k_max
    (light to dark).  Lines: median over seeds; bands: min-max over seeds; dotted: eps."""
    b = data["band"]
    groups = [g for g in data.get("order", []) if g in set(b["group"])]
    groups += [g for g in dict.fromkeys(b["group"]) if g not in groups]
    by_group = data["axis"] is not None and len(groups) > 0
    n_panels = len(groups) if by_group else 1
    ncols = min(ncols, n_panels)
    if by_group:
        fig, axes = panel_grid(n_panels, ncols, style.TEXT / ncols, 2.1, sharey=True)
    else:
        fig, axes = plt.subplots(1, 1, figsize=(style.COLUMN, 2.4 + 0.16 * min(len(groups), style.MAX_LEGEND)),
                                 squeeze=False, layout="constrained")
    if b.empty:
        empty_panel(axes[0, 0], "no finite worst_rel_error in the curves")
        return save_figure(fig, path_stem)
    pal = palette_for(data, groups)
    ks = sorted(b["K"].dropna().unique())
    kcol = dict(zip(ks, [matplotlib.colormaps["viridis"](x) for x in np.linspace(0.85, 0.05, max(len(ks), 1))]))
    for i, g in enumerate(groups):
        ax = axes.flat[i] if by_group else axes[0, 0]
        gb = b[b["group"] == g]
        for k, kb in (gb.groupby("K", sort=True) if by_group else [(None, gb)]):
            col = kcol[k] if by_group else pal[g]
            ax.fill_between(kb["t"], kb["lo"], kb["hi"], color=col, alpha=0.2, lw=0)
            ax.plot(kb["t"], kb["median"], color=col, lw=1.1,
                    label=(f"{data.get('symbol', 'K')}={fmt(k)}" if by_group else None))
        if by_group:
            panel_title(ax, data["labels"].get(g, g), style.TEXT / ncols)
            if len(ks) <= 6 or i == 0:
                ax.legend(fontsize=6, loc="lower left", ncol=1 if len(ks) <= 4 else 2)
    for ax in axes.flat[:n_panels]:
        ax.set_yscale("log")
        for e in data["eps"]:
            ax.axhline(e, color="0.2", ls=":", lw=0.9)
        log_ticks(ax, "y")
        ax.set_xlabel("t")
    for row in axes:
        row[0].set_ylabel("worst relative error")
    for ax in list(axes.flat)[n_panels:]:
        ax.set_visible(False)
    band = "band: min-max over seeds; line: median" if data["n_seeds"] > 1 else "one seed per point: no band"
    handles = [] if by_group else group_handles(groups, pal, data["labels"], lw=1.1)
    handles += [plt.Line2D([], [], color="0.2", ls=":", lw=0.9, label="eps"),
                matplotlib.patches.Patch(color="0.5", alpha=0.3, label=band)]
    legend_below(fig, handles, ncol=1 if not by_group and max(len(h.get_label()) for h in handles) > 28 else 2)
    return save_figure(fig, path_stem)
