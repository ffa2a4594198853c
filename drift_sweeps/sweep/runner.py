"""The runner interface: a settled plan's missing trials, run into its folder.

`TuneRunner` (`tune_runner.py`) runs them on Ray Tune, `SerialRunner` (`serial.py`) one after another in
this process.  Both take the trials still to run from `identity.missing_points`, so either continues a
sweep that the other started, and both write through the same `SweepFolder`; `driver.py` picks one.
"""

from __future__ import annotations

import abc
import argparse

from .plan import Plan
from .signals import Interrupts


class Runner(abc.ABC):
    """Runs a settled plan's missing trials into its folder, then reports; returns the exit code."""

    @abc.abstractmethod
    def run(self, p: Plan, args: argparse.Namespace, interrupts: Interrupts) -> int:
        """Run the trials without a row (`p.mode` is new or resume)."""

    def close(self) -> None:
        """Release what `run` acquired (an embedded Ray); called whatever happened."""
