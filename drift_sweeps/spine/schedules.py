"""Bandwidth schedules h(t) as pure functions of continuous time t (no torch needed)."""

from __future__ import annotations

import math
from typing import Callable

from .registry import Registry

Schedule = Callable[[float, float, float, float], float]
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(t: float, h0: float, rate: float, h_min: float) -> float:
    """h(t) = h0."""
    return h0


@SCHEDULES.register("exponential")
def exponential(t: float, h0: float, rate: float, h_min: float) -> float:
    """h(t) = max(h0 exp(-r t), h_min): the seed paper's annealing with a resolution floor."""
    return max(h0 * math.exp(-rate * t), h_min)


def bandwidth_at(name: str, t: float, h0: float, rate: float = 0.0, h_min: float = 0.0) -> float:
    """Evaluate the registered schedule `name` at time t."""
    return SCHEDULES.get(name)(t, h0, rate, h_min)


def initial_bandwidth(bandwidth: float, k_max: float, per_kmax: bool) -> float:
    """h0: the configured bandwidth, divided by k_max when bandwidth_per_kmax is set."""
    return bandwidth / k_max if per_kmax else bandwidth


# How the linear theory parametrises each schedule: (h0, rate, h_min) -> the exponential family's
# (h0, rate, h_min), rate 0 meaning a constant bandwidth.  A schedule without an entry has no theory.
THEORY_FORM: dict[str, Callable[[float, float, float], tuple[float, float, float]]] = {
    "constant": lambda h0, rate, h_min: (h0, 0.0, 0.0),
    "exponential": lambda h0, rate, h_min: (h0, rate, h_min),
}
