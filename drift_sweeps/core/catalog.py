"""Every registry of the torch side, complete: the one module that imports each module holding entries.

Registration is explicit: an entry module registers into its axis's registry when imported, and this
file imports all of them, so whoever needs a full registry (the trial loop, the contract tests) imports
it from here.  A new entry module is one import line below; `spine.axes` lists its names.
"""

from __future__ import annotations

from ..spine.schedules import SCHEDULES
from . import digits, generators, kernels, mixture, operators, targets, toys  # noqa: F401  (each registers its entries)
from .targets import Target, TargetSpec

KERNELS = kernels.KERNELS
OPERATORS = operators.OPERATORS
TARGETS = targets.TARGETS
GENERATORS = generators.GENERATORS

# config key -> its complete registry (the keys of spine.axes.AXES)
REGISTRIES = {"kernel": KERNELS, "operator": OPERATORS, "schedule": SCHEDULES, "target": TARGETS,
              "model": GENERATORS}


def make_target(name: str, spec: TargetSpec) -> Target:
    """Build the registered target `name`."""
    return TARGETS.get(name)(spec)
