"""What every figure shares: group colours and legends, the common eps, a grid of panels."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import matplotlib.pyplot as plt

from .. import style
from ..tables import Analysis


def palette_for(data: dict, groups: Sequence[str]) -> dict[str, str]:
    """One colour per group, in the comparison table's order (`data["order"]`) so every figure agrees."""
    return style.palette(list(data.get("order", [])) + list(groups))


def legend_below(fig: plt.Figure, handles: list, ncol: Optional[int] = None) -> None:
    """One legend for the whole figure, under the panels."""
    if not handles:
        return
    ncol = ncol or min(len(handles), 2)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)


def group_handles(groups: Sequence[str], pal: dict, labels: dict, **kw) -> list:
    """Legend entries, one per group (a single note instead when there are too many to list)."""
    if len(groups) > style.MAX_LEGEND:
        return [plt.Line2D([], [], color="none", label=f"{len(groups)} groups, coloured in table order")]
    return [plt.Line2D([], [], color=pal[g], label=labels.get(g, g), **kw) for g in groups]


def common_eps(analysis: Analysis) -> Optional[float]:
    """The analysis' eps, or the trials' own when they all share one; None when they differ."""
    if analysis.eps is not None:
        return analysis.eps
    vals = analysis.times["eps"].dropna().unique()
    return float(vals[0]) if len(vals) == 1 else None


def eps_text(eps: Optional[float]) -> str:
    """The convergence threshold as legend or axis text."""
    return f"eps = {eps:g}" if eps is not None else "eps per trial"


def panel_grid(n_panels: int, ncols: int, width: float, height: float, **kw):
    """A figure with at least one panel, up to `ncols` per row, each width x height inches."""
    n = max(n_panels, 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained",
                        **kw)


def sample_panel(ax: plt.Axes, lim: float) -> None:
    """A square panel of 2-D samples in [-lim, lim]^2 with a thin frame and no ticks."""
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_linewidth(0.4)
