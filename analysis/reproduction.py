"""`python -m analysis.reproduction RESULTS [--out docs]`: the seed-paper reproduction report.

Runs `analysis.report` over every `repro_*` study folder under RESULTS, writes each full report
under OUT/reproduction/<study>/ (PNG figures only, to keep the docs small) and assembles
OUT/reproduction.md: per study the commentary from the notes file, the comparison table, the
headline figures and, where the study has one, its acceptance check against docs/theory.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from . import studies, style
from .formatting import markdown
from .report import write_report
from .tables import Analysis, comparison_display


@dataclass(frozen=True)
class Study:
    """One reproduction study: its sweep name, title, report options and extra checks."""

    name: str
    title: str
    figures: tuple[str, ...]
    floor_factor: float = 2.0
    baseline: Optional[str] = None
    checks: Optional[Callable[[Analysis], list[str]]] = None
    report_kwargs: dict = field(default_factory=dict)
    space: str = ""  # the shipped space the sweep runs (default: `name`)
    run_args: str = ""  # what the run command adds to the space (e.g. --set target=moons --name <name>)

    def command(self) -> str:
        """The command that writes this study's folder under results/."""
        return " ".join(filter(None, ("python -m drift_sweeps.run", self.space or self.name, self.run_args,
                                      "--results results")))


def _rate_check(analysis: Analysis) -> list[str]:
    """Study 1: measured rates against lambda(k), per kernel, bandwidth and k."""
    r = analysis.rates.copy()
    trials = analysis.sweep.trials.set_index("trial_id")
    r["kernel"] = r["trial_id"].map(trials["kernel"])
    r["bandwidth"] = r["trial_id"].map(trials["bandwidth"])
    r = r[r["k"] == r["trial_id"].map(trials["k_max"])]  # the one mode each trial carries
    r["ratio"] = r["rate_measured"] / r["rate_predicted"]
    r["within_10pct"] = (r["ratio"] - 1.0).abs() <= 0.10
    rows = r.sort_values(["kernel", "bandwidth", "k"])[
        ["kernel", "bandwidth", "k", "rate_predicted", "rate_measured", "rate_se", "ratio", "within_10pct", "t_end",
         "n_points"]]
    usable = rows[rows["rate_measured"].notna()]
    # measurable: a decay resolved by the fit (slope at least 20 standard errors from zero)
    measurable = usable[(usable["rate_measured"] > 0) & (usable["rate_measured"] >= 20 * usable["rate_se"])]
    lines = [
        "Measured decay rate of the single mode each trial carries (slope of log e_k(t) over the window where "
        "the error is above the threshold), against lambda(k) of docs/theory.md#per-mode-rates. A rate counts as "
        "*measurable* when the fitted slope is positive and at least 20 of its standard errors from zero; "
        "slower modes move less in t = 20 than the particle system's residual error can resolve.",
        "",
        f"- modes with a fitted rate: {len(usable)} of {len(rows)}; measurable: {len(measurable)}; "
        f"measurable and within 10% of lambda(k): {int(measurable['within_10pct'].sum())} of {len(measurable)}",
    ]
    if len(measurable):
        worst = measurable.loc[(measurable["ratio"] - 1).abs().idxmax()]
        lines.append(f"- worst measurable mode: {worst['kernel']} h={worst['bandwidth']:g} k={int(worst['k'])}: "
                     f"measured {worst['rate_measured']:.4g} vs lambda {worst['rate_predicted']:.4g} "
                     f"(ratio {worst['ratio']:.3f})")
    lines += ["", markdown(rows.reset_index(drop=True)), ""]
    return lines


INCREMENT_TOL = 0.15  # the annealed law's per-doubling increment must be within this of ln(2)/r


def _kmax_check(analysis: Analysis) -> list[str]:
    """Studies 2 and 3b: which law wins per group; annealed per-doubling increment against ln(2)/r."""
    f = analysis.fits
    best = f[f["best"]] if not f.empty else f
    lines = ["| group | best law | b | dT per doubling (best law, from K_ref) | log law: b ln 2 | ln(2)/r | "
             f"within {INCREMENT_TOL:.0%} |", "|---|---|---|---|---|---|---|"]
    trials = analysis.sweep.trials
    groups = trials["trial_id"].map(analysis.times.set_index("trial_id")["group"])
    for _, row in best.iterrows():
        cfg = trials[groups == row["group"]]
        rate = float(cfg["rate"].iloc[0]) if len(cfg) and cfg["schedule"].iloc[0] == "exponential" else 0.0
        target = math.log(2.0) / rate if rate > 0 else math.nan
        inc = row.get("dT_per_doubling", math.nan)
        log_fit = f[(f["group"] == row["group"]) & (f["law"] == "log")]
        # T = a + b log K: each doubling adds b ln 2 wherever it is measured
        log_inc = float(log_fit["b"].iloc[0]) * math.log(2.0) if len(log_fit) else math.nan
        ok = "-" if not math.isfinite(target) else ("yes" if abs(log_inc - target) <= INCREMENT_TOL * target else "no")
        lines.append(f"| {analysis.labels.get(row['group'], row['group'])} | {row['formula']} | {row['b']:.4g} | {inc:.4g} | {log_inc:.4g} | "
                     f"{target:.4g} | {ok} |")
    return ["Best law per group (lowest AIC of the censored fits); the per-doubling increment of T under the "
            "best law (extrapolated from K_ref) and under the logarithmic law (b ln 2, the same at every K), and, "
            "for annealed groups, the linear theory's ln(2)/r. "
            f"`within {INCREMENT_TOL:.0%}` compares the logarithmic law's increment with ln(2)/r.", ""] + lines + [""]


STUDIES: tuple[Study, ...] = (
    Study("repro_spectral_rates", "1. Spectral rates", ("decay_rates", "spectrum_heatmaps"), floor_factor=0.05,
          checks=_rate_check),
    Study("repro_kmax", "2. Convergence time against K_max", ("scaling", "scaling_by_group", "spectrum_heatmaps"),
          checks=_kmax_check),
    Study("repro_kernels_2d", "3. Kernels in 2-D", ("scaling", "ablation", "spectrum_heatmaps")),
    Study("repro_annealed_2d", "3b. Annealing in 2-D at N = 65536", ("scaling", "scaling_by_group", "error_curves"),
          checks=_kmax_check),
    Study("repro_operators", "4. Drift operators", ("ablation", "spectrum_heatmaps")),
    Study("repro_stop_gradient", "5. Stop-gradient", ("ablation",)),
    Study("repro_generator", "6. Generator training", ("scaling", "ablation")),
)


# The studies beyond K_max (docs/reproduction_beyond.md): other scaling variables, the 2026 operators.
BEYOND: tuple[Study, ...] = (
    Study("separation", "8. Mass relaxation against the separation", ("scaling", "scaling_by_group"),
          report_kwargs={"axis": "separation/bandwidth"}),
    Study("dimension", "9. Annealing against the dimension", ("ablation",), checks=studies.dimension_check,
          report_kwargs={"axis": "dim"}),
    Study("particles", "10. Equilibrium error against the number of particles", (), checks=studies.particles_check),
    Study("operators_2026", "11. The kernels, normalisations and operators of 2026", ("ablation",),
          checks=studies.operators_check),
    Study("operators_2026_cauchy", "11b. The Cauchy kernel's rows", (), checks=studies.operators_check),
    Study("operators_2026_generators", "11c. The 2026 drifts training a generator: eight Gaussians", (),
          checks=studies.generators_check),
    Study("operators_2026_generators-moons", "11d. The 2026 drifts training a generator: moons", (),
          checks=studies.generators_check, space="operators_2026_generators",
          run_args="--set target=moons --name operators_2026_generators-moons"),
    Study("operators_2026_generators-digits", "11e. The 2026 drifts training a generator: digits", ("quality",),
          checks=studies.generators_check, space="operators_2026_generators",
          run_args="--set target=digits --name operators_2026_generators-digits"),
)
SETS = {"seed": (STUDIES, "reproduction.md", "Reproducing the seed paper's claims"),
        "beyond": (BEYOND, "reproduction_beyond.md", "Studies beyond K_max")}


def read_notes(path: Optional[str]) -> dict[str, str]:
    """Commentary per study from a Markdown file with `## <study name>` sections (`## overview` goes on
    top, `## appendix` after the last study; a heading with spaces in it stays inside its section)."""
    if not path or not os.path.exists(path):
        return {}
    text = open(path).read()
    parts = re.split(r"^## +(\S+)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def read_timings(path: Optional[str]) -> dict[str, float]:
    """`<study> rc=<rc> wall_s=<seconds>` lines -> study -> seconds."""
    out: dict[str, float] = {}
    if path and os.path.exists(path):
        for line in open(path):
            m = re.match(r"(\S+) rc=(\d+) wall_s=(\d+)", line)
            if m:
                out[m.group(1)] = float(m.group(3))
    return out


def build(results: str, out: str, notes: Optional[str] = None, timings: Optional[str] = None,
          n_boot: int = 200, which: str = "seed") -> str:
    """Write every study's report of the set `which` (seed, beyond) and its page under OUT; returns its path."""
    studies_, page, title = SETS[which]
    note_text, wall = read_notes(notes), read_timings(timings)
    page_command = " ".join(filter(None, (
        "python -m analysis.reproduction results --out docs", notes and f"--notes {notes}",
        timings and f"--timings {timings}", which != "seed" and f"--studies {which}")))
    lines = [
        f"# {title}",
        "",
        f"Generated by `{page_command}` over the study folders written by the commands below; the commentary "
        f"under each heading is ours{f' (from `{notes}`)' if notes else ''}, every number and figure comes from "
        "the code. Full per-study reports (all tables and figures) are linked.",
        "",
        f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        "",
        "## Re-running the studies",
        "",
        "```bash",
        *(study.command() for study in studies_),
        page_command,
        "```",
        "",
        "On a GPU cluster: `ray up cluster.yaml`, then each command through `ray exec cluster.yaml --tmux "
        "\"cd ~/drift_sweeps && <command> --gpus-per-trial 0.25\"` with `--results s3://BUCKET/drift`, "
        "and the analysis on any laptop against `s3://BUCKET/drift/<study>`.",
        "",
        "| study | trials | converged | censored | diverged | error | wall time on 2 CPU cores | summed trial time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    body: list[str] = []
    if "overview" in note_text:
        lines[6:6] = [note_text["overview"], ""]
    for study in studies_:
        row, section = _study_section(study, results, out, n_boot, note_text, wall)
        lines += [row] if row else []
        body += section
    if "appendix" in note_text:  # hand-written sections after the generated ones
        body += [note_text["appendix"], ""]
    lines += [""] + body
    path = os.path.join(out, page)
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _study_section(study: Study, results: str, out: str, n_boot: int, note_text: dict,
                   wall: dict) -> tuple[Optional[str], list[str]]:
    """One study: write its report; return (its row of the overview table, or None when not run; its section)."""
    root = os.path.join(results, study.name)
    if not os.path.isdir(root):
        return None, [f"## {study.title}", "", f"*not run: no folder {root}*", ""]
    out_dir = os.path.join(out, "reproduction", study.name)
    with style.only_formats(("png",)):  # the docs keep PNG only (and no report.html: 5 MB each)
        analysis, _ = write_report(root, out_dir, baseline=study.baseline, n_boot=n_boot,
                                   floor_factor=study.floor_factor, html=False, **study.report_kwargs)
    tr = analysis.sweep.trials
    counts = tr["status"].value_counts()
    row = (f"| [{study.name}](#{_anchor(study.title)}) | {len(tr)} | {counts.get('converged', 0)} | "
           f"{counts.get('censored', 0)} | {counts.get('diverged', 0)} | {counts.get('error', 0)} | "
           f"{_minutes(wall.get(study.name))} | {_minutes(float(tr['wall_time_s'].sum()))} |")
    body = [f"## {study.title}", "", f"Sweep `{study.name}` "
            f"([space](../search_spaces/{study.space or study.name}.yaml), [full report](reproduction/{study.name}/report.md)).", ""]
    if study.name in note_text:
        body += [note_text[study.name], ""]
    body += ["### Comparison", "", markdown(comparison_display(analysis.comparison, analysis.sweep.group_keys)), ""]
    if study.checks is not None:
        body += ["### Against the theory", ""] + study.checks(analysis)
    for fig in study.figures:
        png = os.path.join(out_dir, "figures", f"{fig}.png")
        if os.path.exists(png):
            body += [f"![{fig}](reproduction/{study.name}/figures/{fig}.png)", ""]
    return row, body


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _minutes(secs: Optional[float]) -> str:
    if secs is None or not np.isfinite(secs):
        return "-"
    return f"{secs / 60:.1f} min"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m analysis.reproduction", description=__doc__.splitlines()[0])
    p.add_argument("results", help="results root holding the repro_* sweep folders")
    p.add_argument("--out", default="docs", help="output folder (default docs)")
    p.add_argument("--notes", help="Markdown commentary with '## <study name>' sections")
    p.add_argument("--timings", help="file of '<study> rc=<rc> wall_s=<s>' lines")
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--studies", choices=sorted(SETS), default="seed",
                   help="seed: the seed paper's claims (reproduction.md); beyond: the studies beyond K_max "
                        "(reproduction_beyond.md)")
    args = p.parse_args(argv)
    print(build(args.results, args.out, args.notes, args.timings, args.n_boot, args.studies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
