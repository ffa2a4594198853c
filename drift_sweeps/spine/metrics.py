"""Every metric a trial reports at an evaluation, written once: name, type, direction, floor, where it applies.

`record` derives the curve columns, the `final_*` summary columns and the floors from this table; the
Parquet schema (`results`), the Tune reports, the analysis labels and `converge_on` derive from `record`.
A new metric is one `Metric` entry here plus the function that computes it (`drift_sweeps/measure.py`
registers one measurer per `source`); tests/test_metrics.py checks that every entry is produced.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One reported quantity.

    direction  "min" (smaller is better: a quality or error, usable as `converge_on`), "max", or "" (a
               coordinate such as the step, not a quality).
    source     which measurement produces it: "loop" (the trial loop itself), "spectrum" (torus targets),
               "plane" (plane targets), "digits", "ot" (exact optimal transport, plane targets), "modes" (targets
               with known modes), "jacobian" (d >= 2).
    floor      the summary has `<name>_floor`: its value between two independent data draws.
    final      the summary has `final_<name>`: its value at the last evaluation.
    since_v1   absent from sweep files of schema version 1 (those read it as null).
    """

    name: str
    type: type
    description: str
    direction: str = "min"
    source: str = "loop"
    floor: bool = False
    final: bool = True
    since_v1: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("step", int, "optimisation steps taken", "", final=False),
    Metric("t", float, "continuous time t = step * dt (what the schedules and the theory use)", "", final=False),
    Metric("bandwidth", float, "h(t) used for this step's field", "", final=False),
    Metric("loss", float, "the drift loss E|V|^2 (stop-gradient form)"),
    Metric("drift_rms", float, "sqrt(E|V|^2) of this step's field"),
    Metric("worst_rel_error", float, "the default convergence measure: max_k e_k/|phi_p(k)| on the torus, the "
           "energy distance's excess over its floor in data units on the plane"),
    Metric("sample_distance", float, "energy distance between the samples and a fixed data draw", floor=True),
    Metric("sliced_w2", float, "squared sliced Wasserstein-2 to the fixed data draw (128 directions)", source="plane",
           floor=True, since_v1=True),
    Metric("mmd2", float, "squared MMD to the fixed data draw, Gaussian kernels at 0.25-4 x the data's RMS scale",
           source="plane", floor=True, since_v1=True),
    Metric("frechet_distance", float, "digits: Frechet distance to the held-out split in the classifier's features",
           source="digits", floor=True, since_v1=True),
    Metric("class_coverage", float, "digits: share of classes predicted for >= 10% of their uniform share", "max",
           source="digits", since_v1=True),
    Metric("class_kl", float, "digits: KL(predicted class histogram || uniform), nats", source="digits",
           since_v1=True),
    Metric("class_max_deviation", float, "digits: max_c |share_c - 1/10|", source="digits", since_v1=True),
    Metric("w2_exact", float, "plane: exact squared Wasserstein-2 to the fixed data draw (optimal transport, POT), "
           "on the first 1000 samples of each", source="ot", floor=True, since_v1=True),
    # targets with known modes (Target.mixture; core/modes.py defines each, the GAN papers' protocol)
    Metric("modes_covered", float, "modes holding >= 20% of the samples within 3 sigma the target puts there", "max",
           source="modes", floor=True, since_v1=True),
    Metric("high_quality_share", float, "share of samples within 3 sigma of their nearest mode", "max",
           source="modes", floor=True, since_v1=True),
    Metric("mode_mass_error", float, "max_j |q_j - p_j|, q_j the share of samples nearest to mode j", source="modes",
           floor=True, since_v1=True),
    Metric("mode_js", float, "Jensen-Shannon divergence (nats) of the nearest-mode histogram from the weights",
           source="modes", floor=True, since_v1=True),
    # how far the field is from a gradient (arXiv 2604.06333): the antisymmetric part of dV/dx over the
    # symmetric one, RMS over 32 samples, the field of 256 data and 256 samples (d >= 2, d <= 16)
    Metric("field_asymmetry", float, "RMS ||antisym(dV/dx)|| / ||sym(dV/dx)|| of the field (0: a gradient field)", "",
           source="jacobian", since_v1=True),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
FINAL_PREFIX = "final_"  # final_<metric> is the metric at the trial's last evaluation
FLOOR_SUFFIX = "_floor"  # <metric>_floor is its value between two independent data draws
DEFAULT_CONVERGE_ON = "worst_rel_error"


def quality_metrics() -> list[str]:
    """Metrics a trial can converge on (`converge_on`): every one with a direction 'min'."""
    return [m.name for m in METRICS if m.direction == "min"]


def by_source(source: str) -> list[str]:
    """The names a measurement `source` produces, in table order."""
    return [m.name for m in METRICS if m.source == source]


ALWAYS = ("loop", "spectrum", "plane")  # sources every evaluation runs (they define the default convergence measure)


def unknown(names: str) -> list[str]:
    """The names of a comma-separated `metrics` value that are not metrics."""
    return [n.strip() for n in names.split(",") if n.strip() not in BY_NAME]


def sources_for(names: str, converge_on: str = DEFAULT_CONVERGE_ON) -> set[str]:
    """The measurement sources an evaluation runs for a `metrics` value ('all' or comma-separated names)."""
    if names == "all":
        return {*ALWAYS, *(m.source for m in METRICS)}
    return {*ALWAYS, BY_NAME[converge_on].source, *(BY_NAME[n.strip()].source for n in names.split(","))}
