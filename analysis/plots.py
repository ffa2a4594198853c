"""Figures: each has a pure `*_data` function (tables in, tables out) and a `draw_*` function that only draws.

Every `draw_*` takes the data and a path stem and writes `<stem>.png` (FIGURE_DPI) and `<stem>.svg`,
returning the paths.  The Agg backend is selected on import, so this works without a display.
Generated-sample scatter plots over the target density are not here: the Parquet tables hold no
samples (see docs/analysis.md).
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .convergence import format_value  # noqa: E402
from .fits import law_curve  # noqa: E402
from .load import Sweep  # noqa: E402
from .predict import theory_rate_curves  # noqa: E402
from .tables import Analysis  # noqa: E402

FIGURE_DPI = 100
FORMATS = ("png", "svg")
plt.rcParams.update({"svg.fonttype": "none", "figure.dpi": FIGURE_DPI})


def short_labels(analysis: Analysis) -> tuple[dict[str, str], str]:
    """Compact legend labels: group label -> 'v1 / v2 / ...', and the legend title 'key1 / key2 / ...'."""
    keys = analysis.sweep.group_keys
    groups = analysis.times.drop_duplicates("group")
    if not keys:
        return {g: g for g in groups["group"]}, ""
    labels = {row["group"]: " / ".join(format_value(row[k]) for k in keys) for _, row in groups.iterrows()}
    return labels, " / ".join(keys)


def group_palette(groups: Sequence[str]) -> dict[str, tuple]:
    """One colour per group label, in the given order (pass `Analysis.group_order` so figures agree)."""
    colors = sns.color_palette("colorblind", max(len(groups), 1))
    return {g: colors[i % len(colors)] for i, g in enumerate(groups)}


def _palette(data: dict, groups: Sequence[str]) -> dict[str, tuple]:
    order = list(dict.fromkeys(list(data.get("order", [])) + list(groups)))
    return group_palette(order)


def save_figure(fig: plt.Figure, path_stem: str, formats: Sequence[str] = FORMATS) -> list[str]:
    """Write the figure as <stem>.png / <stem>.svg, close it, and return the paths."""
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    paths = []
    for ext in formats:
        path = f"{path_stem}.{ext}"
        fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _empty(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------- T vs K_max


def scaling_data(analysis: Analysis) -> dict:
    """Per-trial points, per-(group, K) medians, fitted laws and theory curves for the T-vs-K_max figure."""
    axis = analysis.sweep.scaling_axis
    labels, title = short_labels(analysis)
    t = analysis.times[~analysis.times["failed"]]
    points = pd.DataFrame({"group": t["group"], "K": t[axis] if axis else np.nan, "T": t["time"], "event": t["event"],
                           "seed": t["seed"]})
    k_max = float(points["K"].max()) if axis and len(points) else 1.0
    grid = np.geomspace(1.0, max(k_max, 2.0), 120)
    laws = (law_curve(analysis.fits, grid) if len(analysis.fits)
            else pd.DataFrame(columns=["group", "law", "best", "K", "T"]))
    theory = analysis.theory[np.isfinite(analysis.theory["T_theory"])] if len(analysis.theory) else analysis.theory
    per_k = analysis.per_k
    medians = pd.DataFrame({"group": per_k["group"], "K": per_k[axis] if axis else np.nan, "T": per_k["median_T"],
                            "lower_bound": per_k["median_T_lower_bound"]})
    fits = analysis.fits[["group", "law", "formula", "ok", "best", "delta_aic", "reason"]] if len(analysis.fits) else \
        pd.DataFrame(columns=["group", "law", "formula", "ok", "best", "delta_aic", "reason"])
    return {"points": points, "medians": medians, "laws": laws, "theory": theory, "labels": labels, "fits": fits,
            "legend_title": title, "eps": analysis.eps, "axis": axis, "order": analysis.group_order}


_LAW_STYLES = {"exp_k2": "--", "power": "-.", "log": (0, (5, 1, 1, 1, 1, 1))}


def _scaling_panel(ax: plt.Axes, data: dict, groups: Sequence[str], pal: dict, all_laws: bool) -> None:
    """Trials, fitted law(s) and theory of `groups` on one log-log panel."""
    pts = data["points"]
    rng = np.random.default_rng(0)
    n = len(groups)
    for i, g in enumerate(groups):
        c = pal[g]
        p = pts[pts["group"] == g]
        # seeds share K and groups share K: dodge groups and jitter seeds so no marker hides another
        shift = np.exp(0.05 * (i - (n - 1) / 2)) if n > 1 else 1.0
        x = p["K"].to_numpy() * shift * np.exp(rng.uniform(-0.015, 0.015, len(p)))
        conv = p["event"].to_numpy()
        ax.scatter(x[conv], p["T"][conv], color=c, s=22, alpha=0.85, zorder=3)
        ax.scatter(x[~conv], p["T"][~conv], facecolors="none", edgecolors=c, marker="^", s=42, lw=1.3, zorder=3)
        laws = data["laws"][data["laws"]["group"] == g]
        for name, lg in laws.groupby("law"):
            best = bool(lg["best"].iloc[0])
            if best:
                ax.plot(lg["K"], lg["T"], color=c, lw=2.0, zorder=2)
            elif all_laws:
                ax.plot(lg["K"], lg["T"], color=c, lw=1.0, alpha=0.6, ls=_LAW_STYLES.get(name, "--"), zorder=2)
        th = data["theory"][data["theory"]["group"] == g] if len(data["theory"]) else data["theory"]
        if len(th):
            ax.plot(th["K"], th["T_theory"], color="0.15" if all_laws else c, ls=":", lw=1.6, marker=".", ms=4,
                    zorder=2)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ks = sorted(pts["K"].dropna().unique())
    ax.set_xticks(ks)
    ax.set_xticklabels([format_value(k) for k in ks])
    ax.set_xticks([], minor=True)
    finite_t = pts["T"][np.isfinite(pts["T"]) & (pts["T"] > 0)]
    if len(finite_t):
        ax.set_ylim(finite_t.min() / 2, finite_t.max() * 4)
    ax.set_xlabel("k_max")
    ax.grid(True, which="both", alpha=0.3)


def _scaling_groups(data: dict) -> list[str]:
    present = set(data["points"]["group"])
    return [g for g in dict.fromkeys(list(data.get("order", [])) + list(data["points"]["group"])) if g in present]


def _t_label(eps: Optional[float]) -> str:
    return f"convergence time T (eps = {eps:g})" if eps is not None else "convergence time T (eps per trial)"


def draw_scaling(data: dict, path_stem: str) -> list[str]:
    """T vs K_max, all groups on one panel: converged trials (dots), censored ones (open triangles at their
    lower bound), each group's best fitted law (solid) and the linear theory (dotted)."""
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    if data["axis"] is None or data["points"].empty:
        _empty(ax, "the sweep did not vary k_max: no T-vs-K_max figure")
        return save_figure(fig, path_stem)
    groups = _scaling_groups(data)
    pal = _palette(data, groups)
    _scaling_panel(ax, data, groups, pal, all_laws=False)
    ax.set_ylabel(_t_label(data["eps"]))
    handles = [plt.Line2D([], [], color=pal[g], marker="o", lw=2, label=data["labels"].get(g, g)) for g in groups]
    handles += [plt.Line2D([], [], color="0.3", marker="o", lw=0, label="converged trial"),
                plt.Line2D([], [], color="0.3", marker="^", mfc="none", lw=0, label="censored (T > shown)"),
                plt.Line2D([], [], color="0.3", lw=2, label="best fitted law"),
                plt.Line2D([], [], color="0.3", lw=1.6, ls=":", label="linear theory")]
    ax.legend(handles=handles, title=data["legend_title"] or None, fontsize=7, title_fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Convergence time against k_max")
    return save_figure(fig, path_stem)


def _panel_grid(n_panels: int, ncols: int, width: float, height: float):
    """A figure with at least one panel, up to `ncols` per row, each width x height inches."""
    n = max(n_panels, 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                        constrained_layout=True)


def draw_scaling_by_group(data: dict, path_stem: str, ncols: int = 2) -> list[str]:
    """One panel per group: its trials, all three fitted laws (best solid, with delta-AIC in the legend)
    and the linear theory (black dotted)."""
    groups = _scaling_groups(data) if data["axis"] is not None else []
    fig, axes = _panel_grid(len(groups), ncols, 5.0, 3.6)
    if not groups:
        _empty(axes[0, 0], "the sweep did not vary k_max: no T-vs-K_max figure")
        return save_figure(fig, path_stem)
    pal = _palette(data, groups)
    fits = data.get("fits", pd.DataFrame())
    for ax, g in zip(axes.flat, groups):
        _scaling_panel(ax, data, [g], pal, all_laws=True)
        ax.set_title(data["labels"].get(g, g), fontsize=8)
        ax.set_ylabel(_t_label(data["eps"]), fontsize=8)
        handles = []
        f = fits[fits["group"] == g] if len(fits) else fits
        for _, row in f.iterrows():
            if not row["ok"]:
                continue
            style = "-" if row["best"] else _LAW_STYLES.get(row["law"], "--")
            handles.append(plt.Line2D([], [], color=pal[g], lw=2.0 if row["best"] else 1.0, ls=style,
                                      label=f"{row['formula']}  (dAIC {row['delta_aic']:.1f})"))
        if not handles:
            reason = f["reason"].iloc[0] if len(f) else "no fit"
            handles.append(plt.Line2D([], [], color="none", label=f"no fit: {reason}"))
        handles.append(plt.Line2D([], [], color="0.15", ls=":", lw=1.6, label="linear theory"))
        ax.legend(handles=handles, fontsize=6.5, loc="upper left", frameon=True, framealpha=0.8)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    return save_figure(fig, path_stem)


# --------------------------------------------------------------------------- spectrum heatmaps


def default_heatmap_trials(analysis: Analysis, per_group: int = 1) -> list[str]:
    """One trial per group: the lowest seed at the largest k_max (the hardest case the group ran)."""
    t = analysis.times[~analysis.times["failed"]]
    t = t[t["trial_id"].isin(analysis.sweep.spectra["trial_id"].unique())]
    axis = analysis.sweep.scaling_axis
    out = []
    for _, g in t.groupby("group", sort=False):
        g = g.sort_values([axis, "seed"], ascending=[False, True]) if axis else g.sort_values("seed")
        out += g["trial_id"].head(per_group).tolist()
    return out


def spectrum_heatmap_data(sweep: Sweep, trial_ids: Sequence[str], times: Optional[pd.DataFrame] = None,
                          labels: Optional[dict] = None) -> list[dict]:
    """Per trial: log10 of the relative error e_k(t)/e_k(0) as a (frequency x t) grid, plus a title."""
    out = []
    info = times.set_index("trial_id") if times is not None else None
    for tid in trial_ids:
        sp = sweep.spectra[sweep.spectra["trial_id"] == tid]
        if sp.empty:
            continue
        order = sp.drop_duplicates("k_vec").sort_values(["k_norm", "k_vec"])["k_vec"].tolist()
        grid = sp.pivot_table(index="k_vec", columns="t", values="error", aggfunc="first").reindex(order)
        e0 = grid.iloc[:, 0].replace(0, np.nan)
        rel = np.log10(grid.div(e0, axis=0).clip(lower=1e-12))
        title, conv_t, eps = tid, math.nan, math.nan
        if info is not None and tid in info.index:
            r = info.loc[tid]
            lab = (labels or {}).get(r["group"], r["group"])
            title = f"{lab}\n{tid}: k_max={format_value(r.get('k_max'))}, seed={r['seed']}, {r['status']}"
            conv_t = r["time"] if r["event"] else math.nan
            eps = r["eps"]
        out.append({"trial_id": tid, "grid": rel, "title": title, "time": conv_t, "eps": eps})
    return out


def draw_spectrum_heatmaps(data: list[dict], path_stem: str, ncols: int = 2) -> list[str]:
    """Heatmaps of log10 e_k(t)/e_k(0) (frequency rows, time columns): red above eps, blue below (white at
    eps, black contour), cyan dashed line at the convergence time."""
    fig, axes = _panel_grid(len(data), ncols, 5.2, 3.4)
    if not data:
        _empty(axes[0, 0], "no spectra for the chosen trials (targets without a known spectrum?)")
        return save_figure(fig, path_stem)
    eps = next((d["eps"] for d in data if np.isfinite(d["eps"])), 0.1)
    center = math.log10(eps)
    vmin = min(center - 0.5, max(min(np.nanmin(d["grid"].to_numpy()) for d in data), center - 2.0))
    norm = matplotlib.colors.TwoSlopeNorm(vcenter=center, vmin=vmin, vmax=max(0.3, center + 0.1))
    mesh = None
    for ax, d in zip(axes.flat, data):
        g = d["grid"]
        t = g.columns.to_numpy(float)
        dt = np.diff(t)
        t_edges = np.concatenate([[t[0] - (dt[0] if dt.size else 1.0) / 2], t[:-1] + dt / 2,
                                  [t[-1] + (dt[-1] if dt.size else 1.0) / 2]])
        y_edges = np.arange(g.shape[0] + 1)
        mesh = ax.pcolormesh(t_edges, y_edges, g.to_numpy(), cmap="RdBu_r", norm=norm, shading="flat")
        if np.isfinite(d["eps"]) and g.shape[1] > 1 and g.shape[0] > 1:
            ax.contour(t, np.arange(g.shape[0]) + 0.5, g.to_numpy(), levels=[math.log10(d["eps"])], colors="black",
                       linewidths=0.8, linestyles="solid")
        if np.isfinite(d["time"]):
            ax.axvline(d["time"], color="cyan", ls="--", lw=1.2)
        step = max(1, g.shape[0] // 12)
        ax.set_yticks(np.arange(g.shape[0])[::step] + 0.5)
        ax.set_yticklabels(g.index[::step], fontsize=7)
        ax.set_xlabel("t")
        ax.set_ylabel("frequency k")
        ax.set_title(d["title"], fontsize=8)
    for ax in list(axes.flat)[len(data):]:
        ax.set_visible(False)
    cb = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9)
    cb.set_label(f"log10 e_k(t) / e_k(0)   (white / contour: eps = {eps:g})")
    return save_figure(fig, path_stem)


# --------------------------------------------------------------------------- decay rates


def decay_rate_data(analysis: Analysis) -> dict:
    """Usable measured rates, the theory's lambda(k) at the initial bandwidth, labels."""
    labels, title = short_labels(analysis)
    rates = analysis.rates
    curves = theory_rate_curves(analysis.times, analysis.sweep.trials)
    return {"rates": rates[rates["usable"]] if len(rates) else rates, "n_total": len(rates), "curves": curves,
            "labels": labels, "legend_title": title, "order": analysis.group_order}


def draw_decay_rates(data: dict, path_stem: str) -> list[str]:
    """Left: measured vs predicted decay rate per (trial, mode), y = x for reference.  Right: rate against |k|:
    measured (dots), the theory's lambda(k) at the initial bandwidth (lines), the theory's average over each
    fit window (crosses; differs from the line when the bandwidth is annealed)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    r = data["rates"]
    groups = list(dict.fromkeys(list(r["group"]) + list(data["curves"]["group"])))
    pal = _palette(data, groups)
    both = r[np.isfinite(r["rate_predicted"]) & (r["rate_predicted"] > 0) & (r["rate_measured"] > 0)] if len(r) else r
    if len(both):
        for g, p in both.groupby("group", sort=False):
            ax1.scatter(p["rate_predicted"], p["rate_measured"], color=pal[g], s=18, alpha=0.8,
                        label=data["labels"].get(g, g))
        lim = [min(both["rate_predicted"].min(), both["rate_measured"].min()) / 1.5,
               max(both["rate_predicted"].max(), both["rate_measured"].max()) * 1.5]
        ax1.plot(lim, lim, color="0.3", lw=1, ls="--", label="measured = predicted")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlim(lim)
        ax1.set_ylim(lim)
        ax1.set_xlabel("predicted rate (linear theory, same window)")
        ax1.set_ylabel("measured rate  -d log e_k / dt")
        ax1.legend(fontsize=7, title=data["legend_title"] or None, title_fontsize=7, loc="upper left")
        ax1.set_title(f"{len(both)} of {data['n_total']} (trial, mode) pairs above the noise threshold", fontsize=9)
    else:
        _empty(ax1, "no (trial, mode) with 3+ evaluations above\n"
                    "floor_factor x noise_floor and a theory prediction\n"
                    "(try a lower --floor-factor)")
    curves = data["curves"]
    for g, c in curves.groupby("group", sort=False):
        ax2.plot(c["k"], c["rate"], color=pal.get(g, "0.3"), lw=1.5)
    if len(r):
        for g, p in r.groupby("group", sort=False):
            ax2.scatter(p["k_norm"], p["rate_measured"].clip(lower=1e-6), color=pal[g], s=16, alpha=0.8, zorder=3)
            ax2.scatter(p["k_norm"], p["rate_predicted"], color=pal[g], marker="x", s=22, zorder=3)
    if len(curves) or len(r):
        handles = [plt.Line2D([], [], color=pal[g], marker="o", lw=1.5 if g in set(curves["group"]) else 0,
                              label=data["labels"].get(g, g)) for g in groups]
        handles.append(plt.Line2D([], [], color="0.3", marker="x", lw=0, label="theory, fit-window average"))
        ax2.set_yscale("log")
        vals = pd.concat([r["rate_measured"], r["rate_predicted"]]) if len(r) else curves["rate"]
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if len(vals):
            ax2.set_ylim(vals.min() / 5, vals.max() * 3)
        ax2.set_xlabel("|k|")
        ax2.set_ylabel("decay rate")
        ax2.legend(handles=handles, fontsize=6, loc="lower left", title=data["legend_title"] or None,
                   title_fontsize=6)
        ax2.set_title("dots: measured; x: theory over the same window; lines: lambda(k), fixed bandwidth",
                      fontsize=8)
    else:
        _empty(ax2, "no theory curve (no group the linear theory covers)")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path_stem)


# --------------------------------------------------------------------------- ablation


def ablation_data(analysis: Analysis, k: Optional[float] = None) -> dict:
    """Per-trial times and per-group medians / fractions converged at one k_max (default K_ref)."""
    axis = analysis.sweep.scaling_axis
    k = analysis.k_ref if k is None else k
    t, pk = analysis.times, analysis.per_k
    if axis and k is not None:
        t, pk = t[t[axis] == k], pk[pk[axis] == k]
    labels, title = short_labels(analysis)
    return {"trials": t[~t["failed"]], "summary": pk, "labels": labels, "legend_title": title, "k": k,
            "eps": analysis.eps, "baseline": analysis.baseline, "order": analysis.group_order}


def draw_ablation(data: dict, path_stem: str) -> list[str]:
    """Left: T per group at one k_max (dots: converged trials, '>': censored, bar: KM median and CI).
    Right: fraction of trials converged per group."""
    s = data["summary"]
    present = set(s["group"])
    groups = [g for g in dict.fromkeys(list(data.get("order", [])) + list(s["group"])) if g in present]
    n = max(len(groups), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.55 * n + 1.8), sharey=True,
                                   gridspec_kw={"width_ratios": [3, 1.2]})
    if not groups:
        _empty(ax1, "no groups at this k_max")
        return save_figure(fig, path_stem)
    pal = _palette(data, groups)
    y = {g: i for i, g in enumerate(groups)}
    tr = data["trials"]
    rng = np.random.default_rng(0)
    for g, p in tr.groupby("group", sort=False):
        if g not in y:
            continue
        yy = y[g] + rng.uniform(-0.15, 0.15, len(p))
        ev = p["event"].to_numpy()
        ax1.scatter(p["time"][ev], yy[ev], color=pal[g], s=20, alpha=0.8, zorder=3)
        ax1.scatter(p["time"][~ev], yy[~ev], color=pal[g], marker=">", s=30, facecolors="none", zorder=3)
    for _, row in s.iterrows():
        i, c = y[row["group"]], pal[row["group"]]
        if np.isfinite(row["median_T"]) and bool(row.get("median_T_lower_bound", False)):
            ax1.annotate("median > here", xy=(row["median_T"], i - 0.32), fontsize=7, color=c, ha="right")
            ax1.plot([row["median_T"]] * 2, [i - 0.3, i + 0.3], color=c, lw=1.0, ls="--")
        elif np.isfinite(row["median_T"]):
            ax1.plot([row["median_T"]] * 2, [i - 0.3, i + 0.3], color=c, lw=2.5)
            if np.isfinite(row.get("median_T_lo", np.nan)):
                hi = row["median_T_hi"] if np.isfinite(row["median_T_hi"]) else ax1.get_xlim()[1]
                ax1.plot([row["median_T_lo"], hi], [i, i], color=c, lw=1, alpha=0.7)
        ax2.barh(i, row["frac_converged"], color=c, alpha=0.85)
        ax2.text(min(row["frac_converged"], 0.98) + 0.01, i, f"{row['frac_converged']:.0%}", va="center", fontsize=7)
    ax1.set_yticks(range(len(groups)))
    ax1.set_yticklabels([data["labels"].get(g, g) for g in groups], fontsize=7)
    ax1.invert_yaxis()
    times = tr["time"][np.isfinite(tr["time"]) & (tr["time"] > 0)]
    if len(times) and times.max() / max(times.min(), 1e-12) > 20:
        ax1.set_xscale("log")
    elif len(times):
        ax1.set_xlim(0, times.max() * 1.08)
    eps = data["eps"]
    ax1.set_xlabel("convergence time T" + (f" (eps = {eps:g})" if eps is not None else ""))
    ax1.set_ylabel(data["legend_title"], fontsize=7)
    k = data["k"]
    ax1.set_title(f"T per group at k_max = {format_value(k)}  (bar: median, line: 95% CI, >: censored)"
                  if k is not None else "T per group (bar: median, line: 95% CI, >: censored)", fontsize=9)
    ax2.set_xlim(0, 1.15)
    ax2.set_xlabel("fraction converged")
    for ax in (ax1, ax2):
        ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path_stem)
