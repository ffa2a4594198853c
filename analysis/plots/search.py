"""The search view: optimisation history, parameter importance and parallel coordinates of the objective."""

from __future__ import annotations

from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import style
from ..labels import fmt
from ..style import empty_panel, log_ticks, save_figure


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
