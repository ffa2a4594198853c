"""One figure style for every static figure: sizes for a two-column paper, fonts readable at that size,
a colour-blind-safe palette, and PNG + PDF + SVG output.

Widths are those of a two-column paper (COLUMN = 3.4 in, TEXT = 7.0 in) so a figure included at its
natural width keeps 8 pt text.  Colours are the Okabe-Ito palette (distinguishable under the common
colour-vision deficiencies and in greyscale by lightness); beyond eight groups a perceptually uniform
colormap (cividis) is sampled instead.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLUMN = 3.4  # inches: one column of a two-column paper
TEXT = 7.0  # inches: the full text width
PNG_DPI = 200
FORMATS = ("png", "pdf", "svg")
_formats = [FORMATS]  # what save_figure writes when not told: FORMATS, or what `only_formats` set
MAX_LEGEND = 12  # groups beyond this get no per-group legend entries (colour still follows the group order)

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]

RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
    "svg.fonttype": "none",  # text stays text in SVG
    "pdf.fonttype": 42,  # TrueType in PDF (editable, accepted by journals)
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.03,
    "axes.formatter.use_mathtext": True,
}
plt.rcParams.update(RC)


def colors(n: int) -> list:
    """n distinguishable colours: Okabe-Ito up to 8, else evenly spaced cividis."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:max(n, 1)]
    cmap = matplotlib.colormaps["cividis"]
    return [matplotlib.colors.to_hex(cmap(x)) for x in np.linspace(0.0, 0.92, n)]


def palette(groups: Sequence[str]) -> dict[str, str]:
    """group -> colour, in the given order (pass the table's group order so every figure agrees)."""
    groups = list(dict.fromkeys(groups))
    return dict(zip(groups, colors(len(groups))))


@contextlib.contextmanager
def only_formats(formats: Sequence[str]) -> Iterator[None]:
    """Within the block, figures saved without explicit formats are written in `formats` only (the
    reproduction docs keep PNG: each PDF and SVG costs more time than the PNG itself)."""
    _formats.append(tuple(formats))
    try:
        yield
    finally:
        _formats.pop()


def save_figure(fig: plt.Figure, path_stem: str, formats: Optional[Sequence[str]] = None) -> list[str]:
    """Write <stem>.png (PNG_DPI), <stem>.pdf and <stem>.svg (or `formats`), close the figure, return the paths."""
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    paths = []
    for ext in formats or _formats[-1]:
        path = f"{path_stem}.{ext}"
        fig.savefig(path, dpi=PNG_DPI if ext == "png" else None, metadata=_metadata(ext))
        paths.append(path)
    plt.close(fig)
    return paths


def _metadata(ext: str) -> dict:
    # no creation dates: regenerated figures are byte-identical when nothing changed
    if ext == "pdf":
        return {"CreationDate": None}
    if ext == "svg":
        return {"Date": None}
    if ext == "png":
        return {"Software": None}
    return {}


def log_ticks(ax: plt.Axes, axis: str = "x", values: Sequence[float] = ()) -> None:
    """One tick format per log axis: plain numbers (`%g`) when every tick lies in [1e-3, 1e4], else powers of
    ten; ticks at `values` when given, else at 1-2-5 / 1-3 / decade steps chosen from the current span.
    Call after the limits are final."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    lo, hi = min(lo, hi), max(lo, hi)
    if len(values):
        target.set_major_locator(matplotlib.ticker.FixedLocator(list(values)))
        lo, hi = min(values), max(values)
    else:
        decades = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
        subs = (1.0,) if decades > 3 else (1.0, 3.0) if decades > 1.5 else (1.0, 2.0, 5.0)
        target.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs, numticks=12))
    if lo >= 1e-3 and hi <= 1e4:
        target.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        target.set_major_formatter(matplotlib.ticker.LogFormatterSciNotation(labelOnlyBase=False))
    target.set_minor_locator(matplotlib.ticker.LogLocator(base=10, subs=np.arange(2, 10) * 1.0, numticks=12))
    target.set_minor_formatter(matplotlib.ticker.NullFormatter())


def panel_title(ax, text: str, width_in: float) -> None:
    """A panel's title wrapped to the panel's width (long group names must not run into the next panel)."""
    import textwrap

    chars = max(12, int(width_in * 72 / (0.62 * RC["axes.titlesize"])))  # ~0.6 em per character, a margin
    ax.set_title("\n".join(textwrap.wrap(str(text), chars)) or str(text))


def empty_panel(ax: plt.Axes, text: str) -> None:
    """A panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7, color="0.35", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
