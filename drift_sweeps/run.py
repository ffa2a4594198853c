"""`python -m drift_sweeps.run [SPACE] [options]`: run a search space as a Ray Tune sweep (or, with
--serial, in this process), writing Parquet.  The entry point only: the sweep runner is the package
`drift_sweeps.sweep` (CLI, sweep folder and its lock, the Tune and serial runners, the final report)."""

from __future__ import annotations

import sys

from .sweep.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
