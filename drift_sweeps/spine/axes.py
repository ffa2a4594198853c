"""The entries of every registry-backed axis, torch-free: name, display label, whether the linear theory
covers it.

The torch registries (`core.kernels.KERNELS`, `core.operators.OPERATORS`, `core.targets.TARGETS`,
`core.generators.GENERATORS`, `spine.schedules.SCHEDULES`) register against this table: a name that is
not here cannot be registered (`spine.registry.Registry`), and the contract tests check that every
name here has its implementation.  Config validation, `--help`, the analysis labels and the report
read names and labels from here, so none of them imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Entry:
    """One variant of an axis: its registry name, its label in tables and figures, and whether the
    linear theory of docs/theory.md describes it (with the other axes' entries that it also needs)."""

    name: str
    label: str
    theory: bool = False


def _table(*entries: Entry) -> dict[str, Entry]:
    return {e.name: e for e in entries}


# config key -> {name: Entry}.  A new variant is one line here plus its implementation in core/.
AXES: dict[str, dict[str, Entry]] = {
    "kernel": _table(
        Entry("gaussian", "Gaussian", True),
        Entry("laplacian", "Laplacian", True),
        Entry("cauchy", "Cauchy", True),
        Entry("matern32", "Matern 3/2", True),
        Entry("matern52", "Matern 5/2", True),
        Entry("rational_quadratic", "rational quadratic", True),  # shape alpha = kernel_shape
    ),
    "operator": _table(
        Entry("meanshift", "mean-shift", True),
        Entry("deng", "Deng"),
        Entry("score", "score"),  # the theory covers it for the Gaussian only (analysis.predict)
        Entry("mmd", "MMD"),
        Entry("sinkhorn", "Sinkhorn"),  # with sinkhorn_iters = 0 it is mean-shift
        Entry("nystrom", "Nystrom"),  # mean-shift with a landmark (low-rank) attraction; landmarks = 0 is exact
    ),
    "schedule": _table(
        Entry("constant", "fixed", True),
        Entry("exponential", "annealed", True),
    ),
    "target": _table(
        Entry("torus1d", "1-D torus", True),
        Entry("torus2d", "2-D torus", True),
        Entry("torus3d", "3-D torus", True),
        Entry("checkerboard", "checkerboard"),
        Entry("gaussian_grid", "Gaussian grid"),
        Entry("swiss_roll", "swiss roll"),
        Entry("file", "file"),
        Entry("bimodal_between", "bimodal (between)"),
        Entry("bimodal_far", "bimodal (far)"),
        Entry("bimodal_collapsed", "bimodal (collapsed)"),
        Entry("eight_gaussians", "eight Gaussians"),
        Entry("moons", "moons"),
        Entry("digits", "digits"),
        Entry("mixture", "Gaussian mixture"),
    ),
    "model": _table(
        Entry("particles", "particles", True),
        Entry("mlp", "MLP generator"),
        Entry("fourier", "Fourier generator"),
        Entry("resmlp", "ResMLP generator"),
        Entry("conv", "conv generator"),
    ),
}

# registry axis names that differ from their config key
REGISTRY_AXIS = {"generator": "model"}


def axis_table(axis: str) -> Mapping[str, Entry]:
    """The entries of a config key or registry axis ('generator' is the key 'model')."""
    return AXES[REGISTRY_AXIS.get(axis, axis)]


def names(key: str) -> list[str]:
    """The allowed values of a registry-backed config key, in table order."""
    return list(axis_table(key))
