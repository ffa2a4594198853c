"""Figures: each has a pure `*_data` function (tables in, tables out) and a `draw_*` function that only draws.

Every `draw_*` takes the data and a path stem and writes `<stem>.png`, `<stem>.pdf` and `<stem>.svg`
(`analysis.style`: paper sizes, 8 pt text, Okabe-Ito colours), returning the paths.  Groups are named
by `analysis.labels` ("Gaussian, annealed h0=2 r=0.25") and coloured in the comparison table's order.
Generated-sample scatter plots over the target density are not here: the Parquet tables hold no
samples (see docs/analysis.md).
"""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import style  # noqa: E402
from .axis import axis_grid, axis_label  # noqa: E402
from .fits import law_curve  # noqa: E402
from .labels import fmt, labels_for  # noqa: E402
from .load import Sweep  # noqa: E402
from .predict import predicted_rate, theory_rate_curves, theory_status  # noqa: E402
from .style import empty_panel, log_ticks, panel_title, save_figure  # noqa: E402
from .tables import Analysis  # noqa: E402

FORMATS = style.FORMATS


def group_labels(analysis: Analysis) -> dict[str, str]:
    """group -> display label ("Gaussian, annealed h0=2 r=0.25") for every group of the analysis."""
    return labels_for(analysis.times, analysis.sweep.trials, analysis.sweep.group_keys)


def short_labels(analysis: Analysis) -> tuple[dict[str, str], str]:
    """(group -> display label, legend title); the labels name themselves, so the title is empty."""
    return group_labels(analysis), ""


def group_palette(groups: Sequence[str]) -> dict[str, str]:
    """One colour per group label, in the given order (pass `Analysis.group_order` so figures agree)."""
    return style.palette(groups)


def _palette(data: dict, groups: Sequence[str]) -> dict[str, str]:
    return style.palette(list(data.get("order", [])) + list(groups))


def _legend_below(fig: plt.Figure, handles: list, ncol: Optional[int] = None) -> None:
    """One legend for the whole figure, under the panels."""
    if not handles:
        return
    ncol = ncol or min(len(handles), 2)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)


def _group_handles(groups: Sequence[str], pal: dict, labels: dict, **kw) -> list:
    if len(groups) > style.MAX_LEGEND:
        return [plt.Line2D([], [], color="none", label=f"{len(groups)} groups, coloured in table order")]
    return [plt.Line2D([], [], color=pal[g], label=labels.get(g, g), **kw) for g in groups]


def common_eps(analysis: Analysis) -> Optional[float]:
    """The analysis' eps, or the trials' own when they all share one; None when they differ."""
    if analysis.eps is not None:
        return analysis.eps
    vals = analysis.times["eps"].dropna().unique()
    return float(vals[0]) if len(vals) == 1 else None


def _eps_text(eps: Optional[float]) -> str:
    return f"eps = {eps:g}" if eps is not None else "eps per trial"


# --------------------------------------------------------------------------- T vs K_max


def scaling_data(analysis: Analysis) -> dict:
    """Per-trial points, per-(group, K) medians, fitted laws and theory curves for the T-vs-K_max figure."""
    axis = analysis.sweep.scaling_axis
    labels = group_labels(analysis)
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
    return f"convergence time T ({_eps_text(eps)})"


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
    pal = _palette(data, groups)
    _scaling_panel(ax, data, groups, pal, all_laws=False)
    ax.set_ylabel(_t_label(data["eps"]))
    handles = _group_handles(groups, pal, data["labels"], marker="o", ms=3.5, lw=1.5)
    handles += _MARKER_KEY + [plt.Line2D([], [], color="0.3", lw=1.5, label="best fitted law"),
                              plt.Line2D([], [], color="0.3", lw=1.2, ls=":", label="linear theory")]
    _legend_below(fig, handles, ncol=1 if max(len(h.get_label()) for h in handles) > 28 else 2)
    return save_figure(fig, path_stem)


def _panel_grid(n_panels: int, ncols: int, width: float, height: float, **kw):
    """A figure with at least one panel, up to `ncols` per row, each width x height inches."""
    n = max(n_panels, 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained",
                        **kw)


def draw_scaling_by_group(data: dict, path_stem: str, ncols: int = 3) -> list[str]:
    """One panel per group: its trials, all three fitted laws (best solid, with delta-AIC in the legend)
    and the linear theory (black dotted)."""
    groups = _scaling_groups(data) if data["axis"] is not None else []
    ncols = min(ncols, max(len(groups), 1))
    fig, axes = _panel_grid(len(groups), ncols, style.TEXT / ncols, 2.5)
    if not groups:
        empty_panel(axes[0, 0], data.get("not_varied", _not_varied("k_max")))
        return save_figure(fig, path_stem)
    pal = _palette(data, groups)
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
    _legend_below(fig, _MARKER_KEY + [plt.Line2D([], [], color="0.15", ls=":", lw=1.2, label="linear theory")], 3)
    return save_figure(fig, path_stem)


# --------------------------------------------------------------------------- spectrum heatmaps


def default_heatmap_trials(analysis: Analysis, per_group: int = 1) -> list[str]:
    """One trial per group: the lowest seed at the largest k_max (the hardest case the group ran)."""
    t = analysis.times[~analysis.times["failed"]]
    t = t[t["trial_id"].isin(analysis.sweep.spectra["trial_id"].unique())]
    axis = analysis.sweep.scaling_axis
    order = {g: i for i, g in enumerate(analysis.group_order)}
    out = []
    for _, g in sorted(t.groupby("group", sort=False), key=lambda kv: order.get(kv[0], len(order))):
        g = g.sort_values([axis, "seed"], ascending=[False, True]) if axis else g.sort_values("seed")
        out += g["trial_id"].head(per_group).tolist()
    return out


def frequency_order(k_vecs: Sequence[str]) -> list[str]:
    """Frequency vectors in reading order: by shell max|k_i|, then |k|, then angle (so 2-D rows are not
    scrambled by string order), 1-D simply by k."""
    def key(kv: str):
        v = [int(c) for c in str(kv).split(",")]
        shell = max(abs(x) for x in v)
        angle = math.atan2(v[1], v[0]) % (2 * math.pi) if len(v) == 2 else 0.0
        return (shell, math.hypot(*v) if len(v) > 1 else abs(v[0]), angle, v)
    return sorted(dict.fromkeys(str(k) for k in k_vecs), key=key)


def spectrum_heatmap_data(sweep: Sweep, trial_ids: Sequence[str], times: Optional[pd.DataFrame] = None,
                          labels: Optional[dict] = None) -> list[dict]:
    """Per trial: log10 of the relative error e_k(t)/e_k(0) as a (frequency x t) grid, plus a title."""
    out = []
    info = times.set_index("trial_id") if times is not None else None
    configs = sweep.trials.set_index("trial_id")
    for tid in trial_ids:
        sp = sweep.spectra[sweep.spectra["trial_id"] == tid]
        if sp.empty:
            continue
        order = frequency_order(sp["k_vec"].unique())
        grid = sp.pivot_table(index="k_vec", columns="t", values="error", aggfunc="first").reindex(order)
        e0 = grid.iloc[:, 0].replace(0, np.nan)
        rel = np.log10(grid.div(e0, axis=0).clip(lower=1e-12))
        shells = [max(abs(int(c)) for c in str(k).split(",")) for k in order]
        cfg = configs.loc[tid] if tid in configs.index else {}
        title, conv_t, eps = tid, math.nan, math.nan
        k_max = cfg.get("k_max") if len(cfg) else None
        seed = cfg.get("seed") if len(cfg) else None
        if info is not None and tid in info.index:
            r = info.loc[tid]
            lab = (labels or {}).get(r["group"], r["group"])
            title = f"{lab}\n{tid}: K={fmt(k_max)}, seed {fmt(seed)}, {r['status']}"
            conv_t = r["time"] if r["event"] else math.nan
            eps = r["eps"]
        out.append({"trial_id": tid, "grid": rel, "title": title, "time": conv_t, "eps": eps, "shells": shells,
                    "dim": len(str(order[0]).split(","))})
    return out


def draw_spectrum_heatmaps(data: list[dict], path_stem: str, ncols: int = 2) -> list[str]:
    """Heatmaps of log10 e_k(t)/e_k(0) (frequency rows, low at the bottom; time columns): red above eps,
    blue below (white at eps, black contour), dashed line at the convergence time."""
    ncols = min(ncols, max(len(data), 1))
    fig, axes = _panel_grid(len(data), ncols, style.TEXT / ncols, 2.3)
    if not data:
        empty_panel(axes[0, 0], "no spectra for the chosen trials (targets without a known spectrum?)")
        return save_figure(fig, path_stem)
    eps = next((d["eps"] for d in data if np.isfinite(d["eps"])), 0.1)
    center = math.log10(eps)
    vmin = min(center - 0.5, max(min(np.nanmin(d["grid"].to_numpy()) for d in data), center - 2.0))
    norm = matplotlib.colors.TwoSlopeNorm(vcenter=center, vmin=vmin, vmax=max(0.3, center + 0.1))
    mesh = None
    for i, (ax, d) in enumerate(zip(axes.flat, data)):
        g = d["grid"]
        t = g.columns.to_numpy(float)
        dt = np.diff(t)
        t_edges = np.concatenate([[t[0] - (dt[0] if dt.size else 1.0) / 2], t[:-1] + dt / 2,
                                  [t[-1] + (dt[-1] if dt.size else 1.0) / 2]])
        y_edges = np.arange(g.shape[0] + 1)
        mesh = ax.pcolormesh(t_edges, y_edges, g.to_numpy(), cmap="RdBu_r", norm=norm, shading="flat",
                             rasterized=True)
        if np.isfinite(d["eps"]) and g.shape[1] > 1 and g.shape[0] > 1:
            ax.contour(t, np.arange(g.shape[0]) + 0.5, g.to_numpy(), levels=[math.log10(d["eps"])], colors="black",
                       linewidths=0.7, linestyles="solid")
        if np.isfinite(d["time"]):
            ax.axvline(d["time"], color="black", ls="--", lw=0.9)
        shells = d.get("shells") or list(range(g.shape[0]))
        if d.get("dim", 1) == 1:
            step = max(1, math.ceil(g.shape[0] / 10))
            ax.set_yticks(np.arange(g.shape[0])[::step] + 0.5, [str(k) for k in g.index[::step]])
            ax.set_ylabel("frequency k")
        else:  # 2-D: rows grouped by shell, one tick per shell, a thin line between shells
            starts = [j for j in range(len(shells)) if j == 0 or shells[j] != shells[j - 1]]
            ends = starts[1:] + [len(shells)]
            ax.set_yticks([(a + b) / 2 for a, b in zip(starts, ends)], [str(shells[a]) for a in starts])
            for a in starts[1:]:
                ax.axhline(a, color="0.2", lw=0.4)
            ax.set_ylabel(r"shell $\max_i |k_i|$ (rows: |k|, angle)")
        ax.grid(False)
        ax.set_xlabel("t")
        panel_title(ax, d["title"], style.TEXT / ncols)
    for ax in list(axes.flat)[len(data):]:
        ax.set_visible(False)
    cb = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9, pad=0.01)
    cb.set_label(r"$\log_{10} e_k(t)/e_k(0)$" + f"   (white, contour: eps = {eps:g})")
    return save_figure(fig, path_stem)


# --------------------------------------------------------------------------- decay rates


def _annealed_rate_curves(analysis: Analysis, grid: np.ndarray) -> pd.DataFrame:
    """lambda(k) at the initial bandwidth h0 for the annealed groups the theory covers (their rate at t = 0)."""
    tr = analysis.sweep.trials.merge(analysis.times[["trial_id", "group"]], on="trial_id")
    rows = []
    for group, cfg in tr.drop_duplicates("group").set_index("group").iterrows():
        cfg = cfg.to_dict()
        if theory_status(cfg) or cfg.get("schedule") == "constant":
            continue
        rows.append(pd.DataFrame({"group": group, "k": grid, "rate": [predicted_rate(cfg, k) for k in grid]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["group", "k", "rate"])


def decay_rate_data(analysis: Analysis) -> dict:
    """Usable measured rates, the theory's lambda(k) (fixed bandwidth; annealed groups at h0), labels."""
    rates = analysis.rates
    curves = theory_rate_curves(analysis.times, analysis.sweep.trials)
    tr = analysis.sweep.trials
    kmax = float(tr["k_max"].max()) if len(tr) else 1.0
    grid = np.linspace(0.05, kmax * (math.sqrt(2) if (tr["target"] == "torus2d").any() else 1.0) + 0.5, 200)
    th = analysis.theory
    return {"rates": rates[rates["usable"]] if len(rates) else rates, "n_total": len(rates), "curves": curves,
            "annealed_curves": _annealed_rate_curves(analysis, grid), "labels": group_labels(analysis),
            "legend_title": "", "order": analysis.group_order,
            "theory_groups": int((th.drop_duplicates("group")["theory_status"] == "ok").sum()) if len(th) else 0}


def draw_decay_rates(data: dict, path_stem: str) -> list[str]:
    """Left: measured vs predicted decay rate per (trial, mode), y = x for reference.  Right: rate against |k|:
    measured (dots), the theory's average over each fit window (crosses), lambda(k) at a fixed bandwidth
    (solid lines) and at the initial bandwidth of annealed groups (dashed)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(style.TEXT, 2.7), layout="constrained")
    r = data["rates"]
    curves = data["curves"]
    annealed = data.get("annealed_curves", pd.DataFrame(columns=["group", "k", "rate"]))
    groups = list(dict.fromkeys(list(r["group"]) + list(curves["group"]) + list(annealed["group"])))
    groups = [g for g in data.get("order", []) if g in groups] + [g for g in groups if g not in data.get("order", [])]
    pal = _palette(data, groups)
    _measured_vs_predicted(ax1, r, pal, data["n_total"])
    for g, c in curves.groupby("group", sort=False):
        ax2.plot(c["k"], c["rate"], color=pal.get(g, "0.3"), lw=1.2)
    for g, c in annealed.groupby("group", sort=False):
        ax2.plot(c["k"], c["rate"], color=pal.get(g, "0.3"), lw=1.0, ls="--")
    if len(r):
        for g, p in r.groupby("group", sort=False):
            ax2.scatter(p["k_norm"], p["rate_measured"].clip(lower=1e-6), color=pal[g], s=10, alpha=0.85, zorder=3,
                        lw=0)
            ax2.scatter(p["k_norm"], p["rate_predicted"], color=pal[g], marker="x", s=14, lw=0.8, zorder=3)
    if len(curves) or len(annealed) or len(r):
        ax2.set_yscale("log")
        vals = pd.concat([r["rate_measured"], r["rate_predicted"]]) if len(r) else \
            pd.concat([curves["rate"], annealed["rate"]])
        vals = pd.to_numeric(vals, errors="coerce").astype(float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if len(vals):  # at most four decades: lambda(k) of a wide Gaussian falls off like exp(-k^2 h^2 / 2)
            ax2.set_ylim(max(vals.min() / 5, vals.max() * 3e-4), vals.max() * 3)
        log_ticks(ax2, "y")
        ax2.set_xlabel("|k|")
        ax2.set_ylabel("decay rate")
        ax2.set_title("rate against frequency")
    else:
        why = ("no theory curve: no group the linear theory covers" if not data.get("theory_groups")
               else "no usable measured rate, and no group with a single lambda(k)\n"
                    "(the theory's times are in the table's T_theory)")
        empty_panel(ax2, why)
    handles = _group_handles(groups, pal, data["labels"], marker="o", ms=3.5, lw=0)
    handles += [plt.Line2D([], [], color="0.3", marker="x", lw=0, label="theory, fit-window average"),
                plt.Line2D([], [], color="0.3", lw=1.2, label=r"$\lambda(k)$, fixed h"),
                plt.Line2D([], [], color="0.3", lw=1.0, ls="--", label=r"$\lambda(k)$ at $h_0$ (annealed)")]
    _legend_below(fig, handles, ncol=3)
    return save_figure(fig, path_stem)


def _measured_vs_predicted(ax1: plt.Axes, r: pd.DataFrame, pal: dict, n_total: int) -> None:
    """The decay-rate figure's left panel: measured against predicted rate per (trial, mode), y = x dashed."""
    both = r[np.isfinite(r["rate_predicted"]) & (r["rate_predicted"] > 0) & (r["rate_measured"] > 0)] if len(r) else r
    if len(both):
        for g, p in both.groupby("group", sort=False):
            ax1.scatter(p["rate_predicted"], p["rate_measured"], color=pal[g], s=10, alpha=0.85, lw=0)
        lim = [min(both["rate_predicted"].min(), both["rate_measured"].min()) / 1.5,
               max(both["rate_predicted"].max(), both["rate_measured"].max()) * 1.5]
        ax1.plot(lim, lim, color="0.3", lw=0.8, ls="--")
        ax1.text(0.97, 0.03, "measured = predicted", transform=ax1.transAxes, ha="right", va="bottom", fontsize=6,
                 color="0.3")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlim(lim)
        ax1.set_ylim(lim)
        log_ticks(ax1, "x")
        log_ticks(ax1, "y")
        ax1.set_xlabel("predicted rate (linear theory, same window)")
        ax1.set_ylabel(r"measured rate $-d\log e_k/dt$")
        ax1.set_title(f"{len(both)} of {n_total} (trial, mode) pairs above the noise threshold")
    else:
        empty_panel(ax1, "no (trial, mode) with 3+ evaluations above\n"
                         "floor_factor x noise_floor and a theory prediction\n"
                         "(try a lower --floor-factor)")


# --------------------------------------------------------------------------- ablation


def ablation_data(analysis: Analysis, k: Optional[float] = None) -> dict:
    """Per-trial times and per-group medians / fractions converged at one k_max (default K_ref)."""
    axis = analysis.sweep.scaling_axis
    k = analysis.k_ref if k is None else k
    t, pk = analysis.times, analysis.per_k
    if axis and k is not None:
        t, pk = t[t[axis] == k], pk[pk[axis] == k]
    return {"trials": t[~t["failed"]], "summary": pk, "labels": group_labels(analysis), "legend_title": "",
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
    pal = _palette(data, groups)
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
        i, c = y[row["group"]], pal[row["group"]]
        if np.isfinite(row["median_T"]) and bool(row.get("median_T_lower_bound", False)):
            ax1.plot([row["median_T"]] * 2, [i - 0.3, i + 0.3], color=c, lw=0.9, ls="--")
            ax1.annotate("median above", xy=(row["median_T"], i - 0.33), fontsize=6, color=c, ha="right",
                         va="bottom")
        elif np.isfinite(row["median_T"]):
            ax1.plot([row["median_T"]] * 2, [i - 0.3, i + 0.3], color=c, lw=2.0)
            if np.isfinite(row.get("median_T_lo", np.nan)):
                hi = row["median_T_hi"] if np.isfinite(row["median_T_hi"]) else (times.max() if len(times) else 1)
                ax1.plot([row["median_T_lo"], hi], [i, i], color=c, lw=0.9, alpha=0.8)
        ax2.barh(i, row["frac_converged"], color=c, alpha=0.9, height=0.6)
        ax2.text(min(row["frac_converged"], 0.97) + 0.02, i, f"{row['frac_converged']:.0%}", va="center", fontsize=6)
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
    ax1.set_xlabel(f"convergence time T ({_eps_text(data['eps'])})")
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


# --------------------------------------------------------------------------- error curves


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
    return {"band": band, "curves": c, "labels": group_labels(analysis), "order": analysis.group_order,
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
        fig, axes = _panel_grid(n_panels, ncols, style.TEXT / ncols, 2.1, sharey=True)
    else:
        fig, axes = plt.subplots(1, 1, figsize=(style.COLUMN, 2.4 + 0.16 * min(len(groups), style.MAX_LEGEND)),
                                 squeeze=False, layout="constrained")
    if b.empty:
        empty_panel(axes[0, 0], "no finite worst_rel_error in the curves")
        return save_figure(fig, path_stem)
    pal = _palette(data, groups)
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
    handles = [] if by_group else _group_handles(groups, pal, data["labels"], lw=1.1)
    handles += [plt.Line2D([], [], color="0.2", ls=":", lw=0.9, label="eps"),
                matplotlib.patches.Patch(color="0.5", alpha=0.3, label=band)]
    _legend_below(fig, handles, ncol=1 if not by_group and max(len(h.get_label()) for h in handles) > 28 else 2)
    return save_figure(fig, path_stem)


# --------------------------------------------------------------------------- search: history, importance, parallel


def _metric_label(metric: str) -> str:
    return {"time_to_eps": "convergence time T"}.get(metric, metric.replace("_", " "))


def history_data(objective: pd.DataFrame, metric: str, mode: str) -> dict:
    """Objective per trial in search order and the best value so far (converged trials only for time_to_eps)."""
    o = objective.sort_values("order")
    v = o["value"].where(~o["censored"])
    best = v.cummin() if mode == "min" else v.cummax()
    return {"objective": o, "best": best.to_numpy(float), "metric": metric, "mode": mode}


def draw_history(data: dict, path_stem: str) -> list[str]:
    """Optimisation history: each trial's objective in the order the searcher proposed it (open triangles:
    censored, a lower bound), the best so far as a step line."""
    o = data["objective"]
    fig, ax = plt.subplots(figsize=(style.COLUMN, 2.4), layout="constrained")
    ok = np.isfinite(o["value"].to_numpy(float))
    if not ok.any():
        empty_panel(ax, "no trial has a value of the objective")
        return save_figure(fig, path_stem)
    cen = o["censored"].to_numpy(bool)
    x = o["order"].to_numpy()
    ax.scatter(x[ok & ~cen], o["value"][ok & ~cen], s=10, color=style.OKABE_ITO[0], lw=0, label="trial")
    ax.scatter(x[ok & cen], o["value"][ok & cen], s=16, marker="^", facecolors="none", edgecolors=style.OKABE_ITO[0],
               lw=0.8, label="censored (lower bound)")
    ax.step(x, data["best"], where="post", color=style.OKABE_ITO[3], lw=1.3, label="best so far")
    vals = o["value"][ok]
    if (vals > 0).all() and vals.max() / vals.min() > 10:
        ax.set_yscale("log")
        log_ticks(ax, "y")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial (search order)")
    ax.set_ylabel(_metric_label(data["metric"]) + f" ({data['mode']})")
    ax.legend(loc="upper right")
    return save_figure(fig, path_stem)


def draw_importance(importance: pd.DataFrame, note: str, path_stem: str) -> list[str]:
    """Horizontal bars: fANOVA importance per parameter (normalised to sum 1)."""
    n = max(len(importance), 1)
    fig, ax = plt.subplots(figsize=(style.COLUMN, 0.25 * n + 1.0), layout="constrained")
    if importance.empty:
        empty_panel(ax, f"no parameter importance: {note}")
        return save_figure(fig, path_stem)
    imp = importance.iloc[::-1]
    ax.barh(range(len(imp)), imp["importance"], color=style.OKABE_ITO[0], height=0.6)
    for i, v in enumerate(imp["importance"]):
        ax.text(v + 0.01, i, f"{v:.2f}", va="center", fontsize=6)
    ax.set_yticks(range(len(imp)), [p.replace(" (+", "\n(+") for p in imp["param"]])
    ax.set_xlim(0, min(1.0, imp["importance"].max()) * 1.2 + 0.02)
    ax.set_xlabel("importance (fANOVA, sums to 1)")
    ax.grid(False, axis="y")
    ax.set_title(note, fontsize=6)
    return save_figure(fig, path_stem)


def _spaced(ticks: list, gap: float = 0.06) -> list:
    """Drop ticks closer than `gap` (axis units) to the one kept before them; the last tick always stays."""
    out: list = []
    for pos, text in sorted(ticks):
        if out and pos - out[-1][0] < gap:
            if pos == max(t[0] for t in ticks):
                out[-1] = (pos, text)
            continue
        out.append((pos, text))
    return out


def parallel_data(objective: pd.DataFrame, params: Sequence[str], metric: str) -> dict:
    """Each varied parameter and the objective scaled to [0, 1] per axis (log for wide positive ranges,
    categories evenly spaced), with the tick labels of each axis."""
    o = objective[np.isfinite(objective["value"].astype(float))].reset_index(drop=True)
    axes, scaled, ticks = [], {}, {}
    if o.empty:
        return {"axes": [], "scaled": {}, "ticks": {}, "value": np.array([]), "censored": np.array([], bool),
                "metric": metric}
    for p in [*[p for p in params if p in o and o[p].map(fmt).nunique() > 1], "value"]:
        col = o[p]
        if p != "value" and (col.dtype == object or col.map(lambda v: isinstance(v, (str, bool, np.bool_))).any()):
            cats = sorted(col.map(fmt).unique(), key=lambda s: (len(s), s))
            pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
            scaled[p] = col.map(fmt).map(pos).to_numpy(float)
            ticks[p] = [(pos[c], c) for c in cats]
        else:
            v = col.astype(float).to_numpy()
            lo, hi = np.nanmin(v), np.nanmax(v)
            logv = lo > 0 and hi / lo > 8
            f = (lambda x: np.log10(x)) if logv else (lambda x: x)
            a, b = f(lo), f(hi)
            scaled[p] = (f(v) - a) / (b - a) if b > a else np.full(len(v), 0.5)
            uniq = np.unique(v[np.isfinite(v)])
            tv = uniq if len(uniq) <= 6 else np.unique([lo, hi] + ([10 ** ((a + b) / 2)] if logv else [(lo + hi) / 2]))
            ticks[p] = _spaced([(((f(x) - a) / (b - a)) if b > a else 0.5, f"{x:.3g}") for x in tv])
        axes.append(p)
    return {"axes": axes, "scaled": scaled, "ticks": ticks, "value": o["value"].to_numpy(float),
            "censored": o["censored"].to_numpy(bool), "metric": metric}


def draw_parallel(data: dict, path_stem: str) -> list[str]:
    """Parallel coordinates: one line per trial across the varied parameters to the objective (last axis),
    coloured by the objective (dashed: censored)."""
    axes = data["axes"]
    fig, ax = plt.subplots(figsize=(style.TEXT, 2.6), layout="constrained")
    if len(axes) < 2 or not len(data["value"]):
        empty_panel(ax, "fewer than one varied parameter with an objective value: no parallel coordinates")
        return save_figure(fig, path_stem)
    v = data["value"]
    logv = (v > 0).all() and v.max() / v.min() > 10
    cnorm = (matplotlib.colors.LogNorm if logv else matplotlib.colors.Normalize)(v.min(), max(v.max(), v.min() * 1.0001))
    cmap = matplotlib.colormaps["cividis_r"]
    x = np.arange(len(axes))
    ys = np.column_stack([data["scaled"][a] for a in axes])
    for j in np.argsort(-v):  # best drawn last, on top
        ax.plot(x, ys[j], color=cmap(cnorm(v[j])), lw=0.9, alpha=0.8, ls="--" if data["censored"][j] else "-")
    for i, a in enumerate(axes):
        ax.axvline(i, color="0.3", lw=0.6)
        for pos, text in data["ticks"][a]:
            ax.text(i + 0.03, pos, text, fontsize=6, va="center", ha="left", color="0.15",
                    bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.7))
    ax.set_xticks(x, [*[a.replace(" (+", "\n(+") for a in axes[:-1]], _metric_label(data["metric"])])
    ax.set_yticks([])
    ax.set_xlim(-0.1, len(axes) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(False)
    ax.spines["left"].set_visible(False)
    sm = matplotlib.cm.ScalarMappable(norm=cnorm, cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, pad=0.01, shrink=0.9)
    cb.set_label(_metric_label(data["metric"]) + (" (dashed: censored)" if data["censored"].any() else ""))
    return save_figure(fig, path_stem)
