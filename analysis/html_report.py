"""report.html: the report as one self-contained, interactive file (no server, no network).

Everything is inside the file: plotly.js (the full bundle, inlined once), the data of every figure,
and a few lines of JavaScript that make the tables sortable (click a column header).  Figures are
plotly figures whose hover box names the trial and its configuration: the error curves of every
trial, T per group, T against k_max, parallel coordinates of the swept parameters against the
objective, the optimisation history and fANOVA importances, measured against predicted decay
rates, and per-frequency error heatmaps.  `write_html(analysis, path)`; `analysis.report` writes it
next to report.md.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from .formatting import display_frame
from .importance import read_spec, search_view, smoke_caps
from .labels import VARIANT, fmt, trial_label
from .plots.search import parallel_data
from .plots.spectra import default_heatmap_trials, spectrum_heatmap_data
from .style import OKABE_ITO, colors
from .tables import Analysis, comparison_display, stats_display

FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=12)

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-order') !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
      th.setAttribute('data-order', asc ? 'asc' : 'desc');
      function key(r) {
        var c = r.cells[col], v = c.getAttribute('data-v');
        var n = parseFloat(v === null ? c.textContent : v);
        return isNaN(n) ? c.textContent.trim().toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_CSS = """
body { font-family: DejaVu Sans, Arial, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.smoke { background: #fff3cd; border: 1px solid #e0c36a; padding: .6em; }
table.sortable { border-collapse: collapse; font-size: 12px; margin: .5em 0; }
table.sortable th { background: #eef; cursor: pointer; position: sticky; top: 0; padding: 3px 6px; }
table.sortable th[data-order=asc]::after { content: " \\25B2"; } table.sortable th[data-order=desc]::after { content: " \\25BC"; }
table.sortable td { border-top: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
table.sortable td.text { text-align: left; }
.scroll { max-height: 420px; overflow: auto; border: 1px solid #ddd; display: inline-block; max-width: 100%; }
.note { color: #555; font-size: 13px; } nav a { margin-right: 1em; }
"""


def _table_html(df: pd.DataFrame, raw: Optional[pd.DataFrame] = None, css_id: str = "") -> str:
    """A sortable HTML table of `df` (text as shown) sorting on the raw values of `raw` where numeric."""
    shown = display_frame(df)
    raw = df if raw is None else raw
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for i in range(len(shown)):
        cells = []
        for c in shown.columns:
            text = html.escape(str(shown[c].iloc[i]))
            v = raw[c].iloc[i] if c in raw else None
            if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
                    and np.isfinite(v):
                cells.append(f'<td data-v="{float(v)!r}">{text}</td>')
            else:
                cells.append(f'<td class="text">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable"{f" id={css_id!r}" if css_id else ""}>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _layout(fig: go.Figure, title: str, height: int = 420, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=70, r=30, t=50, b=60))
    fig.update_layout(title=dict(text=title, x=0.01), template="plotly_white", font=FONT, height=height,
                      hoverlabel=dict(namelength=-1), **kw)
    return fig


def _config_text(analysis: Analysis) -> dict[str, str]:
    """trial_id -> 'variant=..., kernel=..., seed=..., status' for hover boxes."""
    tr = analysis.sweep.trials
    keys = [*analysis.sweep.axes, "seed"]
    return {r["trial_id"]: f"{trial_label(r, keys)}<br>{r['status']}" for r in tr.to_dict("records")}


def _palette(analysis: Analysis) -> dict[str, str]:
    order = analysis.group_order
    return dict(zip(order, colors(len(order))))


def error_curves_figure(analysis: Analysis) -> go.Figure:
    """worst_rel_error against t, one line per trial, coloured by group (click the legend to hide a group)."""
    t = analysis.times[~analysis.times["failed"]].set_index("trial_id")
    cfg, pal, labels = _config_text(analysis), _palette(analysis), analysis.labels
    fig = go.Figure()
    shown = set()
    for tid, c in analysis.sweep.curves.groupby("trial_id", sort=True):
        if tid not in t.index:
            continue
        g = t.loc[tid, "group"]
        c = c[np.isfinite(c["worst_rel_error"]) & (c["worst_rel_error"] > 0)]
        fig.add_trace(go.Scatter(
            x=c["t"].tolist(), y=c["worst_rel_error"].tolist(), mode="lines", line=dict(color=pal.get(g), width=1.3),
            name=labels.get(g, g), legendgroup=g, showlegend=g not in shown,
            hovertemplate=f"<b>{tid}</b><br>{cfg.get(tid, '')}<br>t=%{{x}}<br>worst_rel_error=%{{y:.3g}}"
                          "<extra></extra>"))
        shown.add(g)
    for e in sorted(analysis.times["eps"].dropna().unique()):
        fig.add_hline(y=float(e), line=dict(color="#333", dash="dot", width=1), annotation_text=f"eps={e:g}")
    fig.update_yaxes(type="log", title="worst relative error")
    fig.update_xaxes(title="t")
    return _layout(fig, "Error against time (every trial)", legend=dict(orientation="h", y=-0.2))


def times_figure(analysis: Analysis) -> go.Figure:
    """T per trial against its group (open triangles: censored, T is above)."""
    t = analysis.times[~analysis.times["failed"]]
    cfg, pal, labels = _config_text(analysis), _palette(analysis), analysis.labels
    fig = go.Figure()
    for g in analysis.group_order:
        p = t[t["group"] == g]
        if p.empty:
            continue
        fig.add_trace(go.Scatter(
            x=p["time"].tolist(), y=[labels.get(g, g)] * len(p), mode="markers", name=labels.get(g, g),
            marker=dict(color=pal.get(g), size=9, symbol=["circle" if e else "triangle-right-open" for e in p["event"]]),
            customdata=[cfg.get(i, "") for i in p["trial_id"]], text=p["trial_id"].tolist(),
            hovertemplate="<b>%{text}</b><br>%{customdata}<br>T=%{x:.3g}<extra></extra>", showlegend=False))
    fig.update_xaxes(title="convergence time T (open triangle: censored, T above)")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Convergence time per trial", height=max(260, 60 + 40 * len(analysis.group_order)))


def scaling_figure(analysis: Analysis) -> Optional[go.Figure]:
    """T against the scaling axis (k_max or an expression) per trial with the linear theory (dotted), log-log
    (linear in the axis when it takes values <= 0)."""
    axis = analysis.sweep.scaling_axis
    if not axis:
        return None
    sym = "K" if axis == "k_max" else axis
    t = analysis.times[~analysis.times["failed"]]
    cfg, pal, labels = _config_text(analysis), _palette(analysis), analysis.labels
    fig = go.Figure()
    for g in analysis.group_order:
        p = t[t["group"] == g]
        if p.empty:
            continue
        fig.add_trace(go.Scatter(
            x=p[axis].astype(float).tolist(), y=p["time"].tolist(), mode="markers", name=labels.get(g, g),
            legendgroup=g, marker=dict(color=pal.get(g), size=8,
                                       symbol=["circle" if e else "triangle-up-open" for e in p["event"]]),
            customdata=[cfg.get(i, "") for i in p["trial_id"]], text=p["trial_id"].tolist(),
            hovertemplate="<b>%{text}</b><br>%{customdata}<br>" + sym + "=%{x}<br>T=%{y:.3g}<extra></extra>"))
        th = analysis.theory[(analysis.theory["group"] == g) & np.isfinite(analysis.theory["T_theory"])]
        if len(th):
            fig.add_trace(go.Scatter(x=th["K"].tolist(), y=th["T_theory"].tolist(), mode="lines", legendgroup=g,
                                     line=dict(color=pal.get(g), dash="dot"), showlegend=False,
                                     hovertemplate=f"{labels.get(g, g)}<br>theory T({sym}=%{{x}})=%{{y:.3g}}"
                                                   "<extra></extra>"))
    positive = bool((pd.to_numeric(t[axis], errors="coerce") > 0).all())
    fig.update_xaxes(type="log" if positive else "linear", title=axis)
    fig.update_yaxes(type="log", title="convergence time T")
    return _layout(fig, f"T against {axis} (dotted: linear theory)", legend=dict(orientation="h", y=-0.2))


def parallel_figure(search: dict) -> Optional[go.Figure]:
    """Parallel coordinates of the varied parameters and the objective, coloured by the objective."""
    d = parallel_data(search["objective"], search["params"], search["metric"])
    if len(d["axes"]) < 2 or not len(d["value"]):
        return None
    dims = []
    for a in d["axes"]:
        ticks = d["ticks"][a]
        dims.append(dict(label=a if a != "value" else search["metric"], values=d["scaled"][a].tolist(),
                         range=[0, 1], tickvals=[p for p, _ in ticks], ticktext=[s for _, s in ticks]))
    v = d["value"]
    logv = bool((v > 0).all() and v.max() / v.min() > 10)
    color = np.log10(v) if logv else v
    fig = go.Figure(go.Parcoords(
        dimensions=dims, line=dict(color=color.tolist(), colorscale="Cividis", reversescale=search["mode"] == "min",
                                   showscale=True, colorbar=dict(title=("log10 " if logv else "") + search["metric"]))))
    return _layout(fig, "Parallel coordinates: parameters to objective (drag along an axis to filter)", height=460,
                   margin=dict(l=90, r=60, t=80, b=40))


def history_figure(search: dict) -> Optional[go.Figure]:
    """Objective per trial in search order and the best so far."""
    if search["search"] not in ("optuna", "random"):
        return None
    o = search["objective"].sort_values("order")
    v = o["value"].where(~o["censored"])
    best = v.cummin() if search["mode"] == "min" else v.cummax()
    hover = [trial_label(r, search["params"]) for r in o.to_dict("records")]
    fig = go.Figure([
        go.Scatter(x=o["order"].tolist(), y=o["value"].tolist(), mode="markers", name="trial",
                   marker=dict(color=OKABE_ITO[0], size=8,
                               symbol=["triangle-up-open" if c else "circle" for c in o["censored"]]),
                   text=o["trial_id"].tolist(), customdata=hover,
                   hovertemplate="<b>%{text}</b><br>%{customdata}<br>value=%{y:.3g}<extra></extra>"),
        go.Scatter(x=o["order"].tolist(), y=best.tolist(), mode="lines", line=dict(shape="hv", color=OKABE_ITO[3]),
                   name="best so far")])
    fig.update_xaxes(title="trial (search order)")
    fig.update_yaxes(title=search["metric"])
    return _layout(fig, "Optimisation history")


def importance_figure(search: dict) -> Optional[go.Figure]:
    imp = search["importance"]
    if imp.empty:
        return None
    imp = imp.iloc[::-1]
    fig = go.Figure(go.Bar(x=imp["importance"].tolist(), y=imp["param"].tolist(), orientation="h",
                           marker_color=OKABE_ITO[0], hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(title="importance (fANOVA, sums to 1)")
    return _layout(fig, f"Parameter importance: {search['importance_note']}", height=120 + 40 * len(imp))


def decay_figure(analysis: Analysis) -> Optional[go.Figure]:
    r = analysis.rates
    r = r[r["usable"] & (r["rate_measured"] > 0) & (r["rate_predicted"] > 0)] if len(r) else r
    if r.empty:
        return None
    cfg, pal, labels = _config_text(analysis), _palette(analysis), analysis.labels
    fig = go.Figure()
    for g, p in r.groupby("group", sort=False):
        fig.add_trace(go.Scatter(
            x=p["rate_predicted"].tolist(), y=p["rate_measured"].tolist(), mode="markers", name=labels.get(g, g),
            marker=dict(color=pal.get(g), size=8), text=p["trial_id"].tolist(),
            customdata=[f"{cfg.get(i, '')}<br>k={k}" for i, k in zip(p["trial_id"], p["k_vec"])],
            hovertemplate="<b>%{text}</b><br>%{customdata}<br>predicted %{x:.3g}<br>measured %{y:.3g}"
                          "<extra></extra>"))
    lo = float(min(r["rate_predicted"].min(), r["rate_measured"].min()) / 1.5)
    hi = float(max(r["rate_predicted"].max(), r["rate_measured"].max()) * 1.5)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#555", dash="dash"),
                             name="measured = predicted", hoverinfo="skip"))
    fig.update_xaxes(type="log", title="predicted rate (linear theory, same window)")
    fig.update_yaxes(type="log", title="measured rate")
    return _layout(fig, "Per-mode decay rates", legend=dict(orientation="h", y=-0.25))


def heatmap_figures(analysis: Analysis, trial_ids: Optional[Sequence[str]] = None, limit: int = 8) -> list[go.Figure]:
    trials = list(trial_ids) if trial_ids else default_heatmap_trials(analysis)
    out = []
    for d in spectrum_heatmap_data(analysis.sweep, trials[:limit], analysis.times, analysis.labels):
        g = d["grid"]
        z = np.where(np.isfinite(g.to_numpy()), g.to_numpy(), None).tolist()
        fig = go.Figure(go.Heatmap(
            z=z, x=[float(x) for x in g.columns], y=list(range(len(g.index))), colorscale="RdBu", reversescale=True,
            zmid=math.log10(d["eps"]) if np.isfinite(d["eps"]) else None, customdata=[[k] * g.shape[1] for k in g.index],
            colorbar=dict(title="log10 e_k/e_k(0)"),
            hovertemplate="k=%{customdata}<br>t=%{x}<br>log10 rel. error=%{z:.2f}<extra></extra>"))
        step = max(1, math.ceil(len(g.index) / 12))
        fig.update_yaxes(title="frequency k", tickvals=list(range(len(g.index)))[::step],
                         ticktext=[str(k) for k in g.index][::step])
        fig.update_xaxes(title="t")
        out.append(_layout(fig, d["title"].replace("\n", " - "), height=340))
    return out


def _div(fig: Optional[go.Figure], div_id: str) -> str:
    if fig is None:
        return ""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def trials_frame(analysis: Analysis) -> pd.DataFrame:
    """One row per trial for the trials table: id, group label, swept values, status, T, final error, time."""
    tr = analysis.sweep.trials
    t = analysis.times.set_index("trial_id")
    cols = [c for c in [VARIANT, *analysis.sweep.axes, "seed"] if c in tr and tr[c].notna().any()]
    out = pd.DataFrame({"trial_id": tr["trial_id"]})
    out["group"] = tr["trial_id"].map(t["group"]).map(lambda g: analysis.labels.get(g, g))
    for c in cols:
        out[c] = tr[c].map(lambda v: fmt(v) if isinstance(v, (tuple, list)) else v)
    out["status"] = tr["status"]
    out["T"] = tr["trial_id"].map(t["time"])
    out["censored"] = tr["trial_id"].map(t["censored"])
    for c in ("final_worst_rel_error", "steps_run", "wall_time_s", "node"):
        if c in tr:
            out[c] = tr[c]
    return out


def _stats_html(analysis: Analysis) -> str:
    """The group statistics table with a one-paragraph key (docs/analysis.md, Statistics for ablations)."""
    if analysis.stats.empty:
        return '<p class="note">No group statistics.</p>'
    return _table_html(stats_display(analysis.stats, analysis.labels)) + (
        '<p class="note">Geometric mean of T over each group\'s cells (values of the scaling axis), with bootstrap '
        "intervals over seeds within cells and over cells then seeds; ratio to the reference group paired by cell; "
        "equivalent within: the largest factor the data do not exclude when the interval includes 1; seeds needed "
        "per cell and group to detect the observed ratio (5% two-sided, 80% power).</p>")


def render_html(analysis: Analysis, spec: Optional[dict] = None, search: Optional[dict] = None,
                heatmap_trials: Optional[Sequence[str]] = None) -> str:
    """The text of report.html."""

    spec = spec if spec is not None else read_spec(analysis.sweep.root)
    search = search if search is not None else search_view(analysis, spec)
    sw = analysis.sweep
    caps = smoke_caps(analysis, spec)
    title = f"Sweep {sw.name}" + (" (SMOKE RUN)" if caps else "")
    status = ", ".join(f"{n} {s}" for s, n in sw.trials["status"].value_counts().items())
    comp = comparison_display(analysis.comparison, sw.group_keys, analysis.axis).copy()
    comp.insert(0, "group", analysis.comparison["group"].map(lambda g: analysis.labels.get(g, g)))
    sections = [
        ("comparison", "Comparison", _table_html(comp) +
         '<p class="note">One row per group; click a column header to sort. median_T: Kaplan-Meier median over '
         "seeds (&gt;x: a lower bound), T_theory: the linear theory.</p>"),
        ("trials", "Trials", _table_html(trials_frame(analysis)) +
         '<p class="note">T is the post-hoc convergence time, or for a censored trial the time it was last seen '
         "unconverged (a lower bound).</p>"),
        ("curves", "Error against time", _div(error_curves_figure(analysis), "fig-curves")),
        ("times", "Convergence times", _div(times_figure(analysis), "fig-times")
         + _div(scaling_figure(analysis), "fig-scaling")),
        ("search", "Search view", _div(parallel_figure(search), "fig-parallel") + _div(history_figure(search),
                                                                                       "fig-history")
         + (_div(importance_figure(search), "fig-importance") or
            f'<p class="note">No parameter importance: {html.escape(search["importance_note"])}.</p>')),
        ("stats", "Group statistics", _stats_html(analysis)),
        ("rates", "Decay rates", _div(decay_figure(analysis), "fig-rates") or
         '<p class="note">No usable measured decay rate.</p>'),
        ("spectra", "Per-frequency error",
         "".join(_div(f, f"fig-heat-{i}") for i, f in enumerate(heatmap_figures(analysis, heatmap_trials)))
         or '<p class="note">No spectra (targets without a known spectrum).</p>'),
    ]
    nav = " ".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name, _ in sections)
    body = "\n".join(f'<section id="{sid}"><h2>{html.escape(name)}</h2>\n{content}</section>'
                     for sid, name, content in sections)
    meta = (f"{len(sw.trials)} trials ({status}); swept: {', '.join(sw.axes) or 'none'} (+ seed); search: "
            f"{spec.get('search', 'unknown')}; generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by "
            "python -m analysis.report")
    smoke = (f'<p class="smoke">SMOKE RUN: steps and sample counts were capped ({html.escape(caps)}); the numbers '
             "show that the pipeline works, not what the full sweep finds.</p>" if caps else "")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f"<style>{_CSS}</style>\n<script>{plotly.offline.get_plotlyjs()}</script>\n</head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{smoke}<p class=\"note\">{html.escape(meta)}</p>\n<nav>{nav}</nav>\n"
            f"{body}\n<script>{_SORT_JS}</script>\n"
            f"<script>window.reportInfo = {json.dumps({'sweep': sw.name, 'trials': len(sw.trials)})};</script>\n"
            "</body></html>\n")


def write_html(analysis: Analysis, path: str, spec: Optional[dict] = None, search: Optional[dict] = None,
               heatmap_trials: Optional[Sequence[str]] = None) -> str:
    """Write report.html to `path`; returns the path."""
    text = render_html(analysis, spec, search, heatmap_trials)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
