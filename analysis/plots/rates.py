"""Per-mode decay rates: measured against the linear theory's prediction, and rate against |k|."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import style
from ..predict import predicted_rate, theory_rate_curves, theory_status
from ..style import empty_panel, log_ticks, save_figure
from ..tables import Analysis
from .common import group_handles, legend_below, palette_for


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
            "annealed_curves": _annealed_rate_curves(analysis, grid), "labels": analysis.labels,
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
    pal = palette_for(data, groups)
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
    handles = group_handles(groups, pal, data["labels"], marker="o", ms=3.5, lw=0)
    handles += [plt.Line2D([], [], color="0.3", marker="x", lw=0, label="theory, fit-window average"),
                plt.Line2D([], [], color="0.3", lw=1.2, label=r"$\lambda(k)$, fixed h"),
                plt.Line2D([], [], color="0.3", lw=1.0, ls="--", label=r"$\lambda(k)$ at $h_0$ (annealed)")]
    legend_below(fig, handles, ncol=3)
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
