"""Per-frequency error heatmaps: log10 e_k(t)/e_k(0) per frequency and time for chosen trials."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import matplotlib
import numpy as np
import pandas as pd

from .. import style
from ..labels import fmt
from ..load import Sweep
from ..style import empty_panel, panel_title, save_figure
from ..tables import Analysis
from .common import panel_grid


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


HEATMAP_ROWS = 96  # more frequencies than this (a 2-D K_max = 16 spectrum has 544): show those that matter
HEATMAP_SHARE = 0.01  # ... those whose initial error is at least this share of the largest (the target's modes)


def shown_frequencies(e0: pd.Series) -> pd.Index:
    """The rows a heatmap shows: all of them up to HEATMAP_ROWS, else those with e_k(0) >= HEATMAP_SHARE of the
    largest (at most HEATMAP_ROWS, the largest first): the rest start at the sampling noise and stay there, and
    hundreds of such rows leave the target's modes one pixel high."""
    if len(e0) <= HEATMAP_ROWS:
        return e0.index
    big = e0[e0 >= HEATMAP_SHARE * e0.max()]
    return big.sort_values(ascending=False).index[:HEATMAP_ROWS]


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
        grid = sp.pivot_table(index="k_vec", columns="t", values="error", aggfunc="first")
        n_all = grid.shape[0]
        order = frequency_order(shown_frequencies(grid.iloc[:, 0]))
        grid = grid.reindex(order)
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
        if len(order) < n_all:
            title += f"\n{len(order)} of {n_all} frequencies: e_k(0) >= {HEATMAP_SHARE:g} x the largest"
        out.append({"trial_id": tid, "grid": rel, "title": title, "time": conv_t, "eps": eps, "shells": shells,
                    "dim": len(str(order[0]).split(","))})
    return out


def draw_spectrum_heatmaps(data: list[dict], path_stem: str, ncols: int = 2) -> list[str]:
    """Heatmaps of log10 e_k(t)/e_k(0) (frequency rows, low at the bottom; time columns): red above eps,
    blue below (white at eps, black contour), dashed line at the convergence time."""
    ncols = min(ncols, max(len(data), 1))
    fig, axes = panel_grid(len(data), ncols, style.TEXT / ncols, 2.3)
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
