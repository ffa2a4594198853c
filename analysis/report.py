"""`python -m analysis.report RESULTS/SWEEP [--out DIR] [--eps E] [--baseline SPEC]`: tables, figures, report.md.

Writes into DIR (default: SWEEP/report for a local folder, ./reports/<sweep> for s3://): report.md
with the tables and the figures linked, report.html (the same, self-contained and interactive),
the figures as PNG, PDF and SVG, and the tables as CSV (+ the comparison as Markdown and LaTeX).
Prints the comparison table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import sys
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .fits import CI_LEVEL, CI_METHODS, N_BOOT
from .formatting import markdown
from .generator_study import is_generator_sweep, quality_section, read_samples, write_quality
from .axis import parse_axis
from .load import SweepFolderError, load_sweep
from .importance import read_spec, search_view, smoke_caps
from .plots.ablation import ablation_data, draw_ablation
from .plots.curves import draw_error_curves, error_curve_data
from .plots.rates import decay_rate_data, draw_decay_rates
from .plots.scaling import draw_scaling, draw_scaling_by_group, scaling_data
from .plots.search import draw_history, draw_importance, draw_parallel, history_data, parallel_data
from .plots.spectra import default_heatmap_trials, draw_spectrum_heatmaps, spectrum_heatmap_data
from .predict import FLOOR_FACTOR
from .tables import Analysis, analyse_sweep, comparison_display, stats_display, write_tables

log = logging.getLogger(__name__)


def default_out_dir(sweep_root: str, name: str) -> str:
    """SWEEP/report for a local sweep folder; ./reports/<name> for a remote one."""
    if "://" in sweep_root:
        return os.path.join("reports", name)
    return os.path.join(sweep_root, "report")


SEARCHES_WITH_HISTORY = ("optuna", "random")


def draw_all(analysis: Analysis, out_dir: str, heatmap_trials: Optional[Sequence[str]] = None,
             search: Optional[dict] = None) -> dict[str, list[str]]:
    """Compute and draw every figure into out_dir/figures; returns figure name -> written paths."""
    fig_dir = os.path.join(out_dir, "figures")
    labels = analysis.labels
    trials = list(heatmap_trials) if heatmap_trials else default_heatmap_trials(analysis)
    search = search if search is not None else search_view(analysis, read_spec(analysis.sweep.root))
    figures = {}
    if analysis.sweep.scaling_axis:
        scaling = scaling_data(analysis)
        figures["scaling"] = draw_scaling(scaling, os.path.join(fig_dir, "scaling"))
        figures["scaling_by_group"] = draw_scaling_by_group(scaling, os.path.join(fig_dir, "scaling_by_group"))
    figures["error_curves"] = draw_error_curves(error_curve_data(analysis), os.path.join(fig_dir, "error_curves"))
    figures["spectrum_heatmaps"] = draw_spectrum_heatmaps(
        spectrum_heatmap_data(analysis.sweep, trials, analysis.times, labels),
        os.path.join(fig_dir, "spectrum_heatmaps"))
    figures["decay_rates"] = draw_decay_rates(decay_rate_data(analysis), os.path.join(fig_dir, "decay_rates"))
    figures["ablation"] = draw_ablation(ablation_data(analysis), os.path.join(fig_dir, "ablation"))
    if search["search"] in SEARCHES_WITH_HISTORY:
        figures["history"] = draw_history(history_data(search["objective"], search["metric"], search["mode"]),
                                          os.path.join(fig_dir, "history"))
    figures["importance"] = draw_importance(search["importance"], search["importance_note"],
                                            os.path.join(fig_dir, "importance"))
    figures["parallel"] = draw_parallel(parallel_data(search["objective"], search["params"], search["metric"]),
                                        os.path.join(fig_dir, "parallel"))
    return figures


def _fig(figures: dict[str, list[str]], name: str, out_dir: str, alt: str) -> str:
    paths = figures.get(name, [])
    png = next((p for p in paths if p.endswith(".png")), None)
    if png is None:
        return f"*(figure {name} not drawn)*"
    rel_png = os.path.relpath(png, out_dir)
    others = " ".join(f"[{os.path.splitext(p)[1][1:].upper()}]({os.path.relpath(p, out_dir)})" for p in paths
                      if not p.endswith(".png"))
    return f"![{alt}]({rel_png})" + (f"\n\n{others}" if others else "")


def decay_summary(analysis: Analysis) -> pd.DataFrame:
    """Per group: (trial, mode) pairs, how many had a usable window, median measured / predicted rate."""
    r = analysis.rates
    rows = []
    for g, p in r.groupby("group", sort=False):
        u = p[p["usable"]]
        ratio = (u["rate_measured"] / u["rate_predicted"]).replace([np.inf, -np.inf], np.nan).dropna()
        rows.append({"group": g, "modes": len(p), "usable": len(u),
                     "median_measured_over_predicted": float(ratio.median()) if len(ratio) else np.nan,
                     "ratio_q25": float(ratio.quantile(0.25)) if len(ratio) else np.nan,
                     "ratio_q75": float(ratio.quantile(0.75)) if len(ratio) else np.nan})
    return pd.DataFrame(rows, columns=["group", "modes", "usable", "median_measured_over_predicted", "ratio_q25",
                                       "ratio_q75"])


def _fits_display(analysis: Analysis) -> pd.DataFrame:
    f = analysis.fits
    if f.empty:
        return f
    out = pd.DataFrame({"group": f["group"].map(analysis.labels), "law": f["formula"], "a": f["a"], "a_lo": f["a_lo"],
                        "a_hi": f["a_hi"], "b": f["b"], "b_lo": f["b_lo"], "b_hi": f["b_hi"], "b_se": f["b_se"],
                        "sigma": f["sigma"],
                        "AIC": f["aic"], "dAIC": f["delta_aic"], "BIC": f["bic"], "weight": f["weight"],
                        "support": f["best_support"], "n": f["n"], "censored": f["n_censored"],
                        "best": f["best"], "note": f["reason"].replace("", "-")})
    return out


def _header(analysis: Analysis, spec: dict) -> list[str]:
    """Title, smoke-run warning and the run's metadata."""
    sw, tr = analysis.sweep, analysis.sweep.trials
    status = ", ".join(f"{n} {s}" for s, n in tr["status"].value_counts().items())
    eps = f"{analysis.eps:g} (recomputed post hoc from the curves)" if analysis.eps is not None else \
        "each trial's own eps (" + ", ".join(f"{e:g}" for e in sorted(tr["eps"].unique())) + ")"
    commits = ", ".join(sorted({str(c) for c in tr["git_commit"].dropna().unique()})) or "unknown"
    versions = sorted({v for v in tr["versions"].dropna().unique() if v not in ("", "{}")})
    caps = smoke_caps(analysis, spec)
    fitted = (f", fitted against {sw.scaling_axis}" if sw.scaling_axis else "") + (
        f" (the axis `{sw.axis}`, computed per trial from the config keys {', '.join(sw.axis_keys)})"
        if sw.axis != "k_max" else "")
    return [
        (f"# SMOKE RUN of sweep `{sw.name}` ({caps}): a quick look, not a measurement" if caps else
         f"# Sweep `{sw.name}`: convergence-time report"),
        "",
        *([f"This sweep ran with `--smoke`: steps and sample counts were capped ({caps}), so times, fits and "
           "rates below show that the pipeline works, not what the full sweep would find.", ""] if caps else []),
        f"- folder: `{sw.root}`",
        f"- trials: {len(tr)} ({status})",
        f"- convergence threshold eps: {eps}",
        f"- swept axes: {', '.join(sw.axes) or 'none'} (+ seed); groups are "
        f"{', '.join(sw.group_keys) or 'the whole sweep'}" + fitted,
        f"- reference group for speed-ups: {analysis.labels.get(analysis.baseline, analysis.baseline)} "
        f"(`{analysis.baseline}`)",
        f"- search: {spec.get('search', 'unknown')}" + (f", metric {spec['metric']} ({spec.get('mode', 'min')})"
                                                       if spec.get("metric") else ""),
        f"- git commit(s): {commits}" + (f"; versions: `{versions[0]}`" if len(versions) == 1 else ""),
        f"- generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `python -m analysis.report`",
        "",
    ]


def _comparison_section(analysis: Analysis, figures: dict[str, list[str]], out_dir: str) -> list[str]:
    ax = "k_max" if analysis.axis == "k_max" else analysis.axis
    ref = "K_ref" if ax == "k_max" else f"{ax} (ref)"
    lines = [
        "## Comparison",
        "",
        (f"One row per group at {ax} = {analysis.k_ref:g} (the largest {ax} every group ran). " if analysis.k_ref
         is not None else "One row per group. ")
        + "`median_T` is the Kaplan-Meier median convergence time over seeds (censored trials count as "
        f"'not yet converged'; `>x` means fewer than half converged by x) at {ref}, with a "
        f"{int(CI_LEVEL * 100)}% bootstrap "
        "interval; `T_theory` is the linear theory (docs/theory.md#convergence-time); `best_law` is the scaling law with the "
        f"lowest AIC, `a`, `b` its coefficients with bootstrap CIs, `dT_per_doubling` what doubling {ax} from {ref} "
        "adds to T under it, `law_support` the fraction of bootstrap replicates choosing that law; `speedup` is the "
        "reference group's median T over the row's (`>`/`<`: bound, because one median is censored). `trials`, "
        f"`failed` (diverged or error, left out of times and fits) and `frac_converged` count all {ax} of the group.",
        "",
        markdown(comparison_display(analysis.comparison, analysis.sweep.group_keys, analysis.axis)),
        "",
    ]
    if analysis.sweep.scaling_axis:
        lines += [
            _fig(figures, "scaling", out_dir, f"T against {ax}"),
            "",
            f"Convergence time against {ax}: dots are converged trials, open triangles censored trials drawn at "
            "the time they were last seen unconverged (true T is above), solid lines each group's best law, "
            "dotted the linear theory. Every law per group is drawn under Scaling-law fits.",
            "",
        ]
    return lines


_WORDS = {3: "three", 4: "four"}


def _fits_section(analysis: Analysis, figures: dict[str, list[str]], out_dir: str) -> list[str]:
    if not analysis.sweep.scaling_axis:
        return []
    ax = "k_max" if analysis.axis == "k_max" else analysis.axis
    laws = analysis.laws
    per_k = analysis.per_k.drop(columns=["group"])
    defined = "" if ax == "k_max" else f" Here x = {ax}."
    return [f"## Times per {ax}", "", markdown(per_k), "",
            "## Scaling-law fits", "",
            "Censored regression (Tobit): censored trials enter the likelihood as lower bounds. Likelihoods "
            "are in units of T, so AIC/BIC compare across laws; `weight` is the Akaike weight, `support` the "
            f"bootstrap selection frequency; CIs from {analysis.n_boot} bootstrap replicates over "
            f"seeds (over trials within each {ax} when a group has fewer than 3 seeds)"
            + ("" if analysis.ci == "percentile" else ", expanded percentile intervals (widened for the number of "
               "seeds, docs/analysis.md#scaling-laws)") + "; `b_se` is the Wald "
            "standard error of b (from the fit's curvature, so it reflects the scatter about the law). Laws: "
            + "; ".join(f"`{law.formula}`" for law in laws.values()) + "." + defined, "",
            markdown(_fits_display(analysis)), "",
            _fig(figures, "scaling_by_group", out_dir, "all laws per group"), "",
            f"Each group with all {_WORDS.get(len(laws), len(laws))} laws (best solid; dAIC = AIC minus the "
            "best law's) and the linear theory (black dotted).", ""]


def _curves_and_rates(analysis: Analysis, figures: dict[str, list[str]], out_dir: str) -> list[str]:
    ax = "k_max" if analysis.axis == "k_max" else analysis.axis
    ds = decay_summary(analysis)
    ds["group"] = ds["group"].map(analysis.labels)
    return [
        "## Error against time", "",
        "worst_rel_error against t: the line is the median over seeds, the band their range (min to max), "
        "the dotted line eps" + (f" ; one panel per group, one line per {ax}." if analysis.sweep.scaling_axis
                                 else "."),
        "", _fig(figures, "error_curves", out_dir, "worst relative error against t"), "",
        "## Per-mode decay rates", "",
        f"Slope of log e_k(t) against t for each active mode of each trial, over the window from t = 0 until the "
        f"error first falls below {FLOOR_FACTOR:g} x the trial's `noise_floor`; the prediction is the linear "
        "theory's average rate over the same window (lambda(k) for a constant bandwidth).", "",
        markdown(ds.rename(columns={"median_measured_over_predicted": "measured/predicted (median)"})), "",
        _fig(figures, "decay_rates", out_dir, "measured vs predicted decay rates"), "",
        "## Per-frequency error", "",
        f"log10 of e_k(t)/e_k(0) for one trial per group (largest {ax}, lowest seed): red above eps, blue "
        "below, black contour at eps, cyan dashed line at the convergence time.", "",
        _fig(figures, "spectrum_heatmaps", out_dir, "per-frequency error heatmaps"), "",
        "## Ablation view", "",
        _fig(figures, "ablation", out_dir, "T and fraction converged per group"), "",
    ]


def _stats_section(analysis: Analysis) -> list[str]:
    if analysis.stats.empty:
        return []
    cell = "k_max" if analysis.axis == "k_max" else analysis.axis
    cell = f"value of {cell}" if analysis.sweep.scaling_axis else "group (the sweep has no scaling axis)"
    return ["## Group statistics", "",
            f"Geometric mean of T per group over its cells (one cell per {cell}, each weighted equally; censored "
            "trials at their lower bound, so a group with censored trials is understated) with two "
            f"{int(CI_LEVEL * 100)}% bootstrap intervals: `[seeds]` resamples seeds within cells (these exact "
            "conditions), `[cells+seeds]` resamples cells, then seeds within them (conditions like these; slightly "
            "conservative). `ratio`: the row's geometric mean T over the reference group's, paired by shared cells, "
            "with its cells+seeds interval; when that includes 1, `equivalent within` is the largest factor the data "
            "do not exclude. `seeds needed`: seeds per cell and group for a two-sided 5% test with 80% power to "
            "detect the observed ratio at the observed spread of log T (normal approximation; "
            "docs/analysis.md#statistics-for-ablations).", "",
            markdown(stats_display(analysis.stats, analysis.labels)), ""]


def render_report(analysis: Analysis, figures: dict[str, list[str]], tables: dict[str, str], out_dir: str,
                  spec: Optional[dict] = None, search: Optional[dict] = None, quality: Optional[dict] = None) -> str:
    """The text of report.md (`quality`: a generator sweep's `generator_study.write_quality`)."""
    spec = spec if spec is not None else read_spec(analysis.sweep.root)
    tr = analysis.sweep.trials
    lines = _header(analysis, spec) + _comparison_section(analysis, figures, out_dir)
    if quality is not None:
        lines += quality_section(quality, lambda name, alt: _fig(figures, name, out_dir, alt))
    lines += _fits_section(analysis, figures, out_dir) + _curves_and_rates(analysis, figures, out_dir)
    lines += _stats_section(analysis) + _search_section(figures, out_dir, search)
    notes = list(analysis.notes) + [
        *([] if any(name.startswith("samples_") for name in figures) else
          ["No figure of generated samples over the target density: only a generator sweep's samples are drawn."]),
        "Measured times are the first evaluation at or below eps, so they can exceed a continuous-time "
        "prediction by up to eval_every x dt.",
    ]
    if analysis.eps is not None and analysis.eps < tr["eps"].max():
        notes.append("A trial stops when it reaches its own eps; at a stricter post-hoc eps such a trial is "
                     "censored at its stopping time.")
    lines += ["## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Files", ""] + [f"- [{name}]({os.path.relpath(p, out_dir)})" for name, p in sorted(tables.items())]
    return "\n".join(lines) + "\n"


def _search_section(figures: dict[str, list[str]], out_dir: str, search: Optional[dict]) -> list[str]:
    if search is None:
        return []
    metric = search["metric"] + (" (the post-hoc convergence time; censored trials at their lower bound)"
                                 if search["metric"] == "time_to_eps" else "")
    lines = ["## Search view", "", f"Objective: {metric}, {search['mode']}. Group labels name the variant and the "
             "keys that differ between groups.", ""]
    if "history" in figures:
        lines += [_fig(figures, "history", out_dir, "optimisation history"), "",
                  "Each trial's objective in the order the searcher proposed it, and the best so far.", ""]
    imp = search["importance"]
    lines += ["### Parameter importance", "",
              (search["importance_note"] + ": the share of the objective's variance each parameter explains "
               "(`optuna.importance.FanovaImportanceEvaluator` on a study rebuilt from the trials table).")
              if len(imp) else f"No importance: {search['importance_note']}.", ""]
    if len(imp):
        lines += [markdown(imp), ""]
    lines += [_fig(figures, "importance", out_dir, "parameter importance"), "",
              "### Parallel coordinates", "",
              _fig(figures, "parallel", out_dir, "parallel coordinates"), "",
              "One line per trial from the varied parameters to the objective (last axis), coloured by it.", ""]
    return lines


def write_report(sweep_root: str, out_dir: Optional[str] = None, eps: Optional[float] = None,
                 baseline: Optional[str] = None, n_boot: int = N_BOOT, k_ref: Optional[float] = None,
                 heatmap_trials: Optional[Sequence[str]] = None, interpolate: bool = False,
                 criterion: str = "aic", floor_factor: float = FLOOR_FACTOR, seed: int = 0,
                 html: bool = True, axis: Optional[str] = None, ci: Optional[str] = None) -> tuple[Analysis, str]:
    """Analyse a sweep folder and write report.md, figures and tables into out_dir; returns (analysis, report path).

    `axis`: what the laws are fitted against (default k_max), see `analysis.axis`."""
    if axis is not None:
        parse_axis(axis)  # a malformed expression fails before the sweep is read
    sweep = load_sweep(sweep_root)
    out_dir = out_dir or default_out_dir(sweep_root, sweep.name)
    analysis = analyse_sweep(sweep, eps=eps, baseline=baseline, n_boot=n_boot, seed=seed, interpolate=interpolate,
                             criterion=criterion, k_ref=k_ref, floor_factor=floor_factor, axis=axis, ci=ci)
    tables = write_tables(analysis, out_dir)
    spec = read_spec(sweep_root)
    search = search_view(analysis, spec, seed)
    figures = draw_all(analysis, out_dir, heatmap_trials, search)
    quality = None
    if is_generator_sweep(sweep.trials):  # the sample-quality section: tables and figures of its own
        quality = write_quality(sweep.trials, read_samples(sweep_root), out_dir)
        figures.update(quality["figures"])
        tables.update(quality["files"])
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write(render_report(analysis, figures, tables, out_dir, spec, search, quality))
    if html:
        from .html_report import write_html  # plotly is imported only here
        write_html(analysis, os.path.join(out_dir, "report.html"), spec=spec, search=search,
                   heatmap_trials=heatmap_trials)
    with open(os.path.join(out_dir, "report_args.json"), "w") as fh:
        json.dump({"sweep": sweep_root, "eps": eps, "baseline": analysis.baseline, "n_boot": n_boot,
                   "k_ref": analysis.k_ref, "interpolate": interpolate, "criterion": criterion,
                   "floor_factor": floor_factor, "seed": seed, "axis": analysis.axis,
                   "ci": analysis.ci}, fh, indent=2, default=str)
    return analysis, path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    p.add_argument("sweep", help="a sweep folder (RESULTS/SWEEP), local or s3://")
    p.add_argument("--out", help="output folder (default: SWEEP/report, or ./reports/<sweep> for s3://)")
    p.add_argument("--eps", type=float, help="convergence threshold, recomputed post hoc (default: each trial's own)")
    p.add_argument("--baseline", help="reference group, e.g. 'schedule=constant' or "
                                      "'kernel=gaussian,schedule=constant' "
                                      "(default: the first group)")
    p.add_argument("--axis", help="what T is fitted against: a config key or an expression of config keys, e.g. "
                                  "separation/bandwidth, log(n_samples), k_max*bandwidth (default: k_max)")
    p.add_argument("--k-ref", type=float, help="axis value at which groups are compared (default: the largest value "
                                               "every group ran)")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap replicates (default {N_BOOT})")
    p.add_argument("--trials", help="comma-separated trial ids for the per-frequency heatmaps")
    p.add_argument("--interpolate", action="store_true", help="interpolate crossing times between evaluations")
    p.add_argument("--criterion", choices=("aic", "bic"), default="aic", help="law selection criterion")
    p.add_argument("--ci", choices=CI_METHODS, help="the fits' bootstrap interval (default: percentile for k_max, "
                                                    "expanded for any other axis)")
    p.add_argument("--floor-factor", type=float, default=FLOOR_FACTOR,
                   help=f"decay rates are fitted while error > this x noise_floor (default {FLOOR_FACTOR:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the fANOVA forest")
    p.add_argument("--no-html", action="store_true", help="skip report.html (the interactive report)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.eps is not None and not 0.0 < args.eps < 1.0:
        p.error(f"--eps {args.eps}: must be between 0 and 1")
    try:
        analysis, path = write_report(
            args.sweep, args.out, args.eps, args.baseline, args.n_boot, args.k_ref,
            args.trials.split(",") if args.trials else None, args.interpolate, args.criterion, args.floor_factor,
            args.seed, html=not args.no_html, axis=args.axis, ci=args.ci)
    except (SweepFolderError, ValueError, OSError) as err:  # a damaged file is named by drift_sweeps.results
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(markdown(comparison_display(analysis.comparison, analysis.sweep.group_keys, analysis.axis)))
    print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
